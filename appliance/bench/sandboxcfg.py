"""The backend choices of the admin's config, carried into a bench's sandboxed services.

A bench runs its own services in a temp dir (own sockets, rings, records), but must measure
the backends the box is configured with: `bench latency --config gpu.toml` on a GPU box runs
TensorRT/CUDA, not the CPU defaults. So the model-choosing sections are copied whole, with the
bench's own settings laid over them.
"""

from __future__ import annotations

import json
from dataclasses import fields

from ..config import Config

SECTIONS = ("vad", "asr", "tts", "agent", "gpu")


def _string(text: str) -> str:
    """A TOML basic string. Not json.dumps: it writes characters past U+FFFF as surrogate pairs,
    which TOML refuses; here only quote, backslash, control characters and DEL are escaped and
    the rest stays as UTF-8."""
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(json.dumps(ch)[1:-1] if ch != "\x7f" else "\\u007f")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r} here")


def backend_sections(config: Config, **overrides: dict) -> str:
    """TOML for [vad] [asr] [tts] [agent] [gpu] as ``config`` has them; ``overrides`` maps a
    section to keys the bench sets itself (e.g. ``asr={"model": "whisper-tiny-en"}``)."""
    out = []
    for section in SECTIONS:
        values = getattr(config, section)
        merged = {f.name: getattr(values, f.name) for f in fields(values)}
        merged.update(overrides.get(section, {}))
        out.append(f"[{section}]")
        out += [f"{k} = {_toml(v)}" for k, v in merged.items()]
    return "\n" + "\n".join(out) + "\n"


def configured_sandbox(config: Config, **overrides: dict) -> dict:
    """A bench sandbox (sipdrive.make_sandbox) reading ``config``'s models with its backend
    choices, ``overrides`` laid over them."""
    from .sipdrive import make_sandbox

    sandbox = make_sandbox()
    text = sandbox["config"].read_text().replace(f'models_dir = "{sandbox["root"]}/models"',
                                                 f'models_dir = "{config.paths.models_dir}"')
    sandbox["config"].write_text(text + backend_sections(config, **overrides))
    return sandbox
