"""`appliancectl bench endpoint`: does the endpoint cut callers off mid-sentence, and how long
does it wait after a real end? The fixed silence endpoint against the turn model.

Two sets, synthesised with Piper at several speeds and pitches and sent through the phone
line (8 kHz G.711 and back, sipd's own codec and resamplers):

- hesitations: a sentence the caller stops in ("I'd like to book an appointment for, um,"),
  a pause of 300 to 900 ms, then the rest ("next Tuesday."). The first part is said with the
  comma's continuing intonation, as a speaker who has not finished. An endpoint inside the
  pause is a false cut-off: the agent would answer half a sentence.
- complete answers: short finished turns ("Yes, that's right.", "Tuesday at ten."). The wait
  is the time from the end of the speech to the endpoint, what the caller waits before the
  agent can start.

Each clip runs through the real endpointer (the configured VAD, and the turn model when
measured) frame by frame, as asrd runs it; no services are needed.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from ..ipc import FRAME_NS

HESITATIONS = [
    ("I'd like to book an appointment for, um,", "next Tuesday."),
    ("My name is,", "Sarah Miller."),
    ("Could I come in on,", "Thursday afternoon?"),
    ("I was wondering if,", "you have anything on Friday."),
    ("The number is five five five,", "eight six seven, five three oh nine."),
    ("I need to cancel my,", "appointment next week."),
    ("Can you move it to,", "uh, Monday morning?"),
    ("I think the best time would be,", "around ten."),
    ("So what I wanted to ask was,", "do you take my insurance?"),
    ("Is it possible to,", "speak to someone at the front desk?"),
    ("My son needs a,", "check-up before school starts."),
    ("Actually, could you make it,", "eleven instead?"),
    ("I'm calling about,", "a bill I got last month."),
    ("We'd need an appointment for,", "two people, if that's okay."),
]
COMPLETE = [
    "Yes, that's right.", "No.", "Tuesday at ten.", "My name is Ann Lee.", "Next Thursday, please.",
    "Two in the afternoon.", "I'd like to book an appointment.", "That's all, thank you.",
    "Can I speak to someone, please?", "It's five five five, one two three, four five six seven.",
    "Do you have parking?", "Yes, please go ahead.", "I want to cancel my appointment.",
    "Friday morning works for me.",
]
VOICES = {"plain": (1.0, 1.12), "slow": (1.3, 1.12), "quick": (0.85, 1.05), "low": (1.05, 0.94)}  # length, pitch
PAUSES_MS = (300, 500, 700, 900)
LEAD_S, TAIL_S = 0.5, 2.0


def _voice(text: str, voice: str) -> np.ndarray:
    """``text`` said by the caller at 16 kHz, through the phone line, trimmed to its voice."""
    import soxr

    from .conversations import speak
    from .script import Voice
    from .speech import phone_line

    length, pitch = VOICES[voice]
    narrow = speak(text, Voice(length, pitch)).astype(np.float32) / 32768
    wide = (np.clip(soxr.resample(narrow, 8000, 16000), -1, 1) * 32767).astype(np.int16)
    line = phone_line(wide)
    loud = np.flatnonzero(np.abs(line) > 300)
    return line[loud[0]:loud[-1] + 1] if len(loud) else line


def clips(limit: int = 0) -> tuple[list[dict], list[dict]]:
    """(hesitations, complete answers): every sentence in every voice, pauses spread over them."""
    hes, done = [], []
    pauses = itertools.cycle(PAUSES_MS)
    for (first, rest), voice in itertools.product(HESITATIONS, VOICES):
        hes.append({"text": f"{first} ... {rest}", "voice": voice, "pause_ms": next(pauses),
                    "parts": (_voice(first, voice), _voice(rest, voice))})
    for text, voice in itertools.product(COMPLETE, VOICES):
        done.append({"text": text, "voice": voice, "audio": _voice(text, voice)})
    if limit:
        hes, done = hes[::max(1, len(hes) // limit)][:limit], done[::max(1, len(done) // limit)][:limit]
    return hes, done


def _endpoints(cfg, vads, turn, audio: np.ndarray) -> list[tuple[float, str]]:
    """(seconds into ``audio`` at which an utterance ended, why) for each endpoint."""
    from ..bench.speechdrive import frames_of
    from ..speech.vad import Ended, Endpointer

    ep = Endpointer(cfg, vads(), turn=turn)
    out = []
    for i, frame in enumerate(frames_of(audio)):
        for item in ep.push(i, 10**12 + i * FRAME_NS, frame):
            if isinstance(item, Ended) and item.reason != "too-short":
                out.append(((i + 1) * FRAME_NS / 1e9, item.reason))
    return out


def measure(cfg, vads, turn, hes: list[dict], done: list[dict]) -> dict:
    from .stats import summarize

    silence = lambda s: np.zeros(int(16000 * s), np.int16)  # noqa: E731
    cut, cut_texts, asked = 0, [], time.perf_counter()
    for clip in hes:
        a, b = clip["parts"]
        audio = np.concatenate([silence(LEAD_S), a, silence(clip["pause_ms"] / 1000), b, silence(TAIL_S)])
        resumed = LEAD_S + (len(a) / 16000) + clip["pause_ms"] / 1000
        if any(t < resumed for t, _ in _endpoints(cfg, vads, turn, audio)):
            cut += 1
            cut_texts.append(f'{clip["text"]} ({clip["voice"]}, {clip["pause_ms"]} ms)')
    waits, missed = [], 0
    for clip in done:
        audio = np.concatenate([silence(LEAD_S), clip["audio"], silence(TAIL_S)])
        spoken_end = LEAD_S + len(clip["audio"]) / 16000
        ends = [t for t, _ in _endpoints(cfg, vads, turn, audio) if t >= spoken_end - 0.05]
        if ends:
            waits.append(1000 * (ends[0] - spoken_end))
        else:
            missed += 1
    return {"hesitations": len(hes), "false_cutoffs": cut, "false_cutoff_rate": round(cut / max(1, len(hes)), 3),
            "cut_off": cut_texts, "complete": len(done), "no_endpoint": missed,
            "wait_after_end_ms": summarize(waits), "seconds": round(time.perf_counter() - asked, 1)}


def run(config, *, limit: int = 0, modes: tuple[str, ...] = ("silence", "turn-model")) -> dict:
    from dataclasses import replace

    from ..speech.backends import make_turn_model, make_vad_factory

    hes, done = clips(limit)
    result = {"vad": config.vad.backend, "end_silence_ms": config.vad.end_silence_ms,
              "turn_pause_ms": config.vad.turn_pause_ms, "turn_threshold": config.vad.turn_threshold,
              "turn_max_wait_ms": config.vad.turn_max_wait_ms, "modes": {}}
    vads = make_vad_factory(config)
    try:
        for mode in modes:
            cfg = replace(config, vad=replace(config.vad, endpoint=mode))
            model = make_turn_model(cfg)
            result["modes"][mode] = measure(cfg.vad, vads, model.complete if model else None, hes, done)
    finally:
        vads.close()
    return result


def render(r: dict) -> str:
    from .stats import table

    rows = [("setup", f'VAD {r["vad"]}; silence endpoint {r["end_silence_ms"]} ms; turn model asked at '
                      f'{r["turn_pause_ms"]} ms, complete at p >= {r["turn_threshold"]:g}, else waits up to '
                      f'{r["turn_max_wait_ms"]} ms')]
    for mode, m in r["modes"].items():
        w = m["wait_after_end_ms"]
        rows.append((mode, f'false cut-offs {m["false_cutoffs"]}/{m["hesitations"]} '
                           f'({100 * m["false_cutoff_rate"]:.1f} %); wait after a real end p50 {w["p50"]:.0f} / '
                           f'p95 {w["p95"]:.0f} / mean {w["mean"]:.0f} ms over {w["n"]} complete turns'
                           + (f'; {m["no_endpoint"]} never ended' if m["no_endpoint"] else "")))
    return table(rows)
