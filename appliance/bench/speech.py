"""`appliancectl bench asr DIR` and `bench tts`: the speech services measured as processes.

bench asr plays each WAV into a call's in-ring in real time (as sipd would), through a real
asrd, and scores the finals: WER against the .txt (jiwer, after textnorm.for_wer on both
sides) and latency from the end of speech (the last voiced frame's capture time) to the
final on the bus. That latency includes the endpoint's silence wait, i.e. it is the
"endpointing + ASR final" part of the turn budget. ``--g711`` sends the audio through the
8 kHz µ-law path of sipd's codec and resamplers first, as a phone call would.

bench tts asks a real ttsd to speak typical agent sentences and takes the time from tts.say
to the first frame in the out-ring (tts.started), plus the backend's real-time factor.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from ..bus.messages import AsrFinal, TtsSay, SpeechStopped, TtsFinished, TtsStarted
from ..config import Config
from ..speech import wavfile
from .preflight import require_models
from .sandboxcfg import configured_sandbox
from .sipdrive import EventLog, Service
from .speechdrive import CallSource, play
from .stats import summarize, table

AGENT_SENTENCES = [
    "Thank you for calling Riverside Dental, how can I help you today?",
    "Sure, I can help with that.",
    "Let me check the calendar for Tuesday morning.",
    "I have an opening at nine thirty or at eleven fifteen, which would you prefer?",
    "Your appointment is booked for Tuesday at 9:30 am.",
    "Could you spell your last name for me, please?",
    "The total comes to $45.50, and you can pay at the front desk.",
    "One moment, I am transferring you to the billing team.",
    "Is there anything else I can help you with?",
    "Thanks for calling, goodbye!",
]


@contextmanager
def sandboxed(sandbox: dict, name: str) -> Iterator[tuple[Service, CallSource, EventLog]]:
    """One service of the sandbox running, a call source and its events; on any way out (a
    failed start included) the service is stopped and the sandbox's dirs are removed."""
    service, source, events = Service(sandbox, name), None, None
    try:
        service.start()
        source = CallSource(sandbox["run_dir"], sandbox["shm_dir"])
        events = EventLog(str(sandbox["run_dir"]), services=(name,))
        yield service, source, events
    finally:
        if events is not None:
            events.close()
        if source is not None:
            source.close()
        service.stop()
        shutil.rmtree(sandbox["root"], ignore_errors=True)
        shutil.rmtree(sandbox["shm_dir"], ignore_errors=True)


def phone_line(pcm: np.ndarray) -> np.ndarray:
    """16 kHz → 8 kHz → G.711 µ-law → 8 kHz → 16 kHz through sipd's own codec and resamplers."""
    from ..telephony.media.g711 import ulaw_decode, ulaw_encode
    from ..audio.resample import downsampler, upsampler

    down, up = downsampler(), upsampler()
    out = []
    for i in range(0, len(pcm) - 319, 320):
        narrow = ulaw_decode(ulaw_encode(down.process(pcm[i:i + 320])))
        out.append(up.process(narrow))
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def run_asr(config: Config, directory: Path, *, model: str, g711: bool, early_ms: int, speed: float = 1.0,
            repeat: int = 1) -> dict:
    import jiwer

    from ..speech.textnorm import for_wer

    clips = sorted(p for p in directory.glob("*.wav") if p.with_suffix(".txt").exists())
    if not clips:
        raise RuntimeError(f"no WAV files with a .txt transcript beside them in {directory}")
    overrides = {"model": model, "early_decode_ms": early_ms}
    require_models(replace(config, asr=replace(config.asr, **overrides)), ("asrd",))
    sandbox = configured_sandbox(config, asr=overrides)
    rows, latencies, decodes, refs, hyps = [], [], [], [], []
    with sandboxed(sandbox, "asrd") as (asrd, source, events):
        for n, clip in enumerate(clips * repeat):
            call = f"bench{n}"
            writer = source.attach(asrd, call)[call]
            pcm = wavfile.read_16k(clip)
            if g711:
                pcm = phone_line(pcm)
            silence = np.zeros(8000, np.int16)
            events.events.clear()
            play(writer, np.concatenate([silence, pcm, silence, silence, silence]), speed=speed)
            time.sleep(0.2)
            source.end_call(call)
            events.collect(lambda e: isinstance(e, AsrFinal) or getattr(e, "TYPE", "") == "asr.dropped", timeout=15)
            time.sleep(0.3)
            events.collect(timeout=0.2)
            finals = events.of(AsrFinal)
            text = " ".join(f.text for f in finals)
            stops = [s for s in events.of(SpeechStopped) if s.reason != "too-short"]
            lat = [f.latency_ms for f in finals if any(s.utterance == f.utterance and s.reason == "silence"
                                                       for s in stops)]
            latencies += lat
            decodes += [f.decode_ms for f in finals]
            ref = clip.with_suffix(".txt").read_text().strip()
            refs.append(for_wer(ref))
            hyps.append(for_wer(text))
            rows.append({"clip": clip.name, "ref": ref, "hyp": text, "latency_ms": lat,
                         "wer": round(jiwer.wer(refs[-1], hyps[-1]) if refs[-1] else 0.0, 3)})
            deadline = time.monotonic() + 5
            while asrd.status().details["calls"] and time.monotonic() < deadline:
                time.sleep(0.05)
        status = asrd.status().details
    return {
        "bench": "asr", "dir": str(directory), "model": model, "g711": g711, "early_decode_ms": early_ms,
        "clips": len(clips), "wer": round(jiwer.wer(refs, hyps), 4),
        "repeat": repeat, "latency_after_speech_ms": summarize(latencies), "decode_ms": summarize(decodes),
        "speculative_hits": status.get("speculative_hits", 0), "speculative_misses": status.get("speculative_misses", 0),
        "per_clip": rows,
    }


def render_asr(r: dict) -> str:
    lat = r["latency_after_speech_ms"]
    dec = r["decode_ms"]
    rows = [(c["clip"], f'wer {c["wer"]:.2f}  {c["hyp"]!r}') for c in r["per_clip"][: r["clips"]]]
    rows += [("model", f'{r["model"]}{" via 8 kHz G.711" if r["g711"] else ""}'),
             ("WER", f'{100 * r["wer"]:.1f} % over {r["clips"]} clips x {r["repeat"]}'),
             ("final after end of speech", f'p50 {lat["p50"]:.0f} ms  p95 {lat["p95"]:.0f} ms  max {lat["max"]:.0f} ms '
                                           f'(n={lat["n"]}; includes the endpoint silence)'),
             ("decode time (recogniser only)", f'p50 {dec["p50"]:.0f} ms  p95 {dec["p95"]:.0f} ms'),
             ("speculative decodes used", f'{r["speculative_hits"]} (missed {r["speculative_misses"]})')]
    return table(rows)


def run_tts(config: Config, *, repeat: int = 3) -> dict:
    from ..bus.messages import Ok
    from ..speech.backends import make_tts
    from ..speech.textnorm import for_speech

    require_models(config, ("ttsd",))
    # Real-time factor of the backend alone, in this process.
    backend = make_tts(config)
    rtf, first_chunk = [], []
    for sentence in AGENT_SENTENCES * repeat:
        t0 = time.perf_counter()
        chunks = []
        for chunk in backend.synthesize(for_speech(sentence)):
            if not chunks:
                first_chunk.append(time.perf_counter() - t0)
            chunks.append(chunk)
        took = time.perf_counter() - t0
        rtf.append(took / max(sum(len(c) for c in chunks) / backend.sample_rate, 1e-3))
    # Time to first audio through the real ttsd process (tts.say → first frame in the ring).
    sandbox = configured_sandbox(config)
    first_audio = []
    with sandboxed(sandbox, "ttsd") as (ttsd, source, events):
        source.start_call("bench")
        time.sleep(0.3)
        for i, sentence in enumerate(AGENT_SENTENCES * repeat):
            reply = ttsd.control(TtsSay(call_id="bench", turn=f"t{i}", text=sentence), timeout=5)
            if not isinstance(reply, Ok):
                raise RuntimeError(f"ttsd refused: {reply}")
            events.collect(lambda e: isinstance(e, TtsFinished) and e.turn == f"t{i}", timeout=30)
        first_audio = [e.latency_ms for e in events.of(TtsStarted)]
    return {"bench": "tts", "backend": backend.name, "sentences": len(AGENT_SENTENCES) * repeat,
            "first_audio_ms": summarize(first_audio), "backend_first_chunk_ms": summarize(first_chunk, 1000),
            "rtf": summarize(rtf)}


def render_tts(r: dict) -> str:
    fa, fc, rtf = r["first_audio_ms"], r["backend_first_chunk_ms"], r["rtf"]
    return table([
        ("backend", f'{r["backend"]}, {r["sentences"]} sentences'),
        ("first audio in the ring (ttsd)", f'p50 {fa["p50"]:.0f} ms  p95 {fa["p95"]:.0f} ms  max {fa["max"]:.0f} ms'),
        ("first chunk (backend alone)", f'p50 {fc["p50"]:.0f} ms  p95 {fc["p95"]:.0f} ms'),
        ("real-time factor", f'p50 {rtf["p50"]:.3f}  p95 {rtf["p95"]:.3f}'),
    ])
