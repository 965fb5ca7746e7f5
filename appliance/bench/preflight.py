"""Before a bench or the demo starts any service: are the models they load set up?

A service that finds its model missing exits with a clear line, but by then the others are
up; checking first means a new user gets every missing model and the `models setup` to run,
and nothing is started at all."""

from __future__ import annotations

from ..config import Config
from ..config.backends import TTS_WITH_VOICE, VAD_WITH_MODEL, AsrBackendName
from ..models.errors import ModelError

SERVICES = ("sipd", "asrd", "ttsd", "agentd")


def models_for(config: Config, services: tuple[str, ...] = SERVICES) -> list[str]:
    """The manifest names ``services`` load with ``config``'s backends (sipd loads none)."""
    names = []
    if "asrd" in services:
        if config.asr.backend == AsrBackendName.WHISPER:
            names.append(config.asr.model)
        if config.vad.backend in VAD_WITH_MODEL:
            names.append(config.vad.model)
    if "ttsd" in services and config.tts.backend in TTS_WITH_VOICE:  # a bench timing espeak-ng is no bench
        names.append(config.tts.voice)
    if "agentd" in services and config.agent.llm_model:
        names.append(config.agent.llm_model)
    return list(dict.fromkeys(names))


def require_models(config: Config, services: tuple[str, ...] = SERVICES) -> None:
    """ModelError naming every model that is not ready and the one command that sets them up."""
    from ..models.store import locate

    problems, missing = [], []
    for name in models_for(config, services):
        try:
            locate(config, name)
        except ModelError as exc:
            problems.append(str(exc))
            missing.append(name)
        except Exception as exc:  # an unknown or invalid manifest: ManifestError
            problems.append(f"model {name}: {exc}")
            missing.append(name)
    if problems:
        raise ModelError("; ".join(problems) + f" (nothing was started; run: appliancectl models setup "
                         f"{' '.join(missing)})")
