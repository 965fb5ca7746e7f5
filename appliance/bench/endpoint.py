"""`appliancectl bench endpoint`: does the endpoint cut callers off mid-sentence, and how long
does it wait after a real end? The fixed silence endpoint against the turn model.

Two sets, synthesised with Piper at several speeds and pitches and sent through the phone
line (8 kHz G.711 and back, sipd's own codec and resamplers):

- hesitations: a sentence the caller stops in ("I'd like to book an appointment for, um,"),
  a pause of 300 to 900 ms, then the rest ("next Tuesday."). The whole sentence is synthesised
  at once and the pause is opened at its comma, so the words before the pause carry the
  intonation of a sentence that goes on (said alone, "My name is," ends as if finished, and
  any listener would take it for the end). An endpoint inside the pause is a false cut-off:
  the agent would answer half a sentence.
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

from ..audio import FRAME_NS

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


def _opened(first: str, rest: str, voice: str) -> tuple[np.ndarray, np.ndarray]:
    """``first rest`` said as one sentence, split at the comma's own short gap (the quiet 10 ms
    blocks nearest to where ``first`` alone would end), so each part keeps its sentence-medial
    intonation; the caller's pause goes between them."""
    whole = _voice(f"{first} {rest}", voice)
    alone = len(_voice(first, voice)), len(_voice(rest, voice))
    expect = len(whole) * alone[0] / sum(alone)
    block = 160
    n = len(whole) // block
    rms = np.sqrt(np.mean(whole[: n * block].astype(np.float64).reshape(n, block) ** 2, axis=1))
    quiet = rms < max(150.0, 0.05 * float(np.percentile(rms, 90)))
    gaps, i = [], 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if j - i >= 2 and 0 < i and j < n:
                gaps.append((i, j))
            i = j
        else:
            i += 1
    if gaps:
        i, j = min(gaps, key=lambda g: abs((g[0] + g[1]) / 2 * block - expect))
    else:  # no gap at all: the quietest block near the expected end
        lo, hi = max(1, int(expect / block) - 15), min(n - 1, int(expect / block) + 15)
        i = j = lo + int(np.argmin(rms[lo:hi]))
    return whole[: i * block], whole[j * block:]


def clips(limit: int = 0) -> tuple[list[dict], list[dict]]:
    """(hesitations, complete answers): every sentence in every voice, pauses spread over them."""
    hes, done = [], []
    pauses = itertools.cycle(PAUSES_MS)
    for (first, rest), voice in itertools.product(HESITATIONS, VOICES):
        hes.append({"text": f"{first} ... {rest}", "voice": voice, "pause_ms": next(pauses),
                    "parts": _opened(first, rest, voice)})
    for text, voice in itertools.product(COMPLETE, VOICES):
        done.append({"text": text, "voice": voice, "audio": _voice(text, voice)})
    if limit:
        hes, done = hes[::max(1, len(hes) // limit)][:limit], done[::max(1, len(done) // limit)][:limit]
    return hes, done


def _endpoints(cfg, vads, turn, audio: np.ndarray) -> list[tuple[float, str, np.ndarray]]:
    """(seconds into ``audio`` at which an utterance ended, why, the utterance's audio as asrd
    would decode it) for each endpoint."""
    from ..bench.speechdrive import frames_of
    from ..speech.vad import Ended, Endpointer

    ep = Endpointer(cfg, vads(), turn=turn)
    out = []
    for i, frame in enumerate(frames_of(audio)):
        for item in ep.push(i, 10**12 + i * FRAME_NS, frame):
            if isinstance(item, Ended) and item.reason != "too-short":
                out.append(((i + 1) * FRAME_NS / 1e9, item.reason, item.audio))
    return out


def _next_onset(audio: np.ndarray, after_s: float) -> float:
    """Seconds into ``audio`` where speech starts again after ``after_s`` (10 ms blocks)."""
    start = int(after_s * 16000)
    n = (len(audio) - start) // 160
    loud = np.flatnonzero(np.abs(audio[start:start + n * 160].reshape(n, 160)).max(axis=1) > 300) if n > 0 else []
    return after_s + (loud[0] * 160 / 16000 if len(loud) else (len(audio) - start) / 16000)


def _held(asr, utterance: np.ndarray) -> tuple[bool, float, str]:
    """What agentd does with that utterance's final: held for more (its words end mid-sentence,
    ``incomplete``) or answered; and when the final comes (the real decode time)."""
    from ..agent.conversation import incomplete

    started = time.perf_counter()
    text = asr.transcribe(utterance, 30).text
    return incomplete(text), time.perf_counter() - started, text


def measure(cfg, vads, turn, hes: list[dict], done: list[dict], *, asr=None, hold_ms: int = 0) -> dict:
    """The endpointer's own figures, and with ``asr`` the turn as the agent takes it: a final
    whose words end mid-sentence ("My name is") is held ``hold_ms`` (turns.incomplete_wait_ms)
    for the rest, so a cut inside the pause only counts if the caller resumes after that hold,
    and a complete turn that reads as incomplete waits that much longer."""
    from .stats import summarize

    silence = lambda s: np.zeros(int(16000 * s), np.int16)  # noqa: E731
    cut, cut_texts, asked = 0, [], time.perf_counter()
    turn_cut, turn_cut_texts = 0, []
    for clip in hes:
        a, b = clip["parts"]
        audio = np.concatenate([silence(LEAD_S), a, silence(clip["pause_ms"] / 1000), b, silence(TAIL_S)])
        resumed = LEAD_S + (len(a) / 16000) + clip["pause_ms"] / 1000
        inside = [(t, u) for t, _, u in _endpoints(cfg, vads, turn, audio) if t < resumed]
        if not inside:
            continue
        cut += 1
        label = f'{clip["text"]} ({clip["voice"]}, {clip["pause_ms"]} ms)'
        cut_texts.append(label)
        if asr is not None:
            t, utterance = inside[0]
            held, decode_s, text = _held(asr, utterance)
            # A cut at a short gap *inside* the first words ("for, | um,") is followed by speech
            # long before the opened pause ends: the hold waits for that, not for the pause.
            if not held or t + decode_s + hold_ms / 1000 < _next_onset(audio, t):
                turn_cut += 1
                turn_cut_texts.append(f"{label}: answered {text!r}")
    waits, turn_waits, missed = [], [], 0
    for clip in done:
        audio = np.concatenate([silence(LEAD_S), clip["audio"], silence(TAIL_S)])
        spoken_end = LEAD_S + len(clip["audio"]) / 16000
        ends = [(t, u) for t, _, u in _endpoints(cfg, vads, turn, audio) if t >= spoken_end - 0.05]
        if not ends:
            missed += 1
            continue
        waits.append(1000 * (ends[0][0] - spoken_end))
        if asr is not None:
            held, _, _ = _held(asr, ends[0][1])
            turn_waits.append(waits[-1] + (hold_ms if held else 0))
    out = {"hesitations": len(hes), "false_cutoffs": cut, "false_cutoff_rate": round(cut / max(1, len(hes)), 3),
           "cut_off": cut_texts, "complete": len(done), "no_endpoint": missed,
           "wait_after_end_ms": summarize(waits)}
    if asr is not None:
        out["with_words"] = {"hold_ms": hold_ms, "false_cutoffs": turn_cut,
                             "false_cutoff_rate": round(turn_cut / max(1, len(hes)), 3), "cut_off": turn_cut_texts,
                             "wait_after_end_ms": summarize(turn_waits)}
    out["seconds"] = round(time.perf_counter() - asked, 1)
    return out


def run(config, *, limit: int = 0, modes: tuple[str, ...] = ("silence", "turn-model"), words: bool = True) -> dict:
    """``words``: also the turn as agentd takes it, its word check included (needs the recogniser)."""
    from dataclasses import replace

    from ..agent.definition import Turns
    from ..speech.backends import make_asr, make_turn_model, make_vad_factory

    hes, done = clips(limit)
    result = {"vad": config.vad.backend, "end_silence_ms": config.vad.end_silence_ms,
              "turn_pause_ms": config.vad.turn_pause_ms, "turn_threshold": config.vad.turn_threshold,
              "turn_max_wait_ms": config.vad.turn_max_wait_ms, "modes": {}}
    vads = make_vad_factory(config)
    asr = make_asr(config) if words else None
    hold_ms = Turns().incomplete_wait_ms  # the agents' default; an agent file may set its own
    try:
        for mode in modes:
            cfg = replace(config, vad=replace(config.vad, endpoint=mode))
            model = make_turn_model(cfg)
            result["modes"][mode] = measure(cfg.vad, vads, model.complete if model else None, hes, done, asr=asr,
                                            hold_ms=hold_ms)
    finally:
        vads.close()
        if asr is not None:
            asr.close()
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
        if "with_words" in m:
            t, w = m["with_words"], m["with_words"]["wait_after_end_ms"]
            rows.append((f"{mode} + words", f'false cut-offs {t["false_cutoffs"]}/{m["hesitations"]} '
                                            f'({100 * t["false_cutoff_rate"]:.1f} %); wait after a real end p50 '
                                            f'{w["p50"]:.0f} / p95 {w["p95"]:.0f} / mean {w["mean"]:.0f} ms (agentd '
                                            f'holds a final ending mid-sentence {t["hold_ms"]} ms for the rest)'))
    return table(rows)
