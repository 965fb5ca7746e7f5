"""A real softphone (baresip) calls the whole appliance and talks to the example agent; what
the caller heard is transcribed back and checked, and the call record must match."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soxr
from appliance.bench.calldrive import baresip_call, read_wav

from appliance.agent.records import CallRecords
from appliance.bus.messages import AsrFinal, CallEnded, TtsFinished
from appliance.speech.textnorm import for_wer


def heard_by_caller(dump: Path, models_dir: Path) -> str:
    from appliance.speech.asr.whisper import WhisperAsr

    pcm, rate = read_wav(dump)
    pcm16 = (np.clip(soxr.resample(pcm.astype(np.float32) / 32768, rate, 16000), -1, 1) * 32767).astype(np.int16)
    asr = WhisperAsr(models_dir / "whisper-base-en")
    # Transcribe in 20 s pieces cut at silence-ish points: Whisper's window is 30 s.
    out, step = [], 16000 * 20
    for i in range(0, len(pcm16), step):
        out.append(asr.transcribe(pcm16[i:i + step], 30).text)
    return for_wer(" ".join(out))


def test_a_caller_asks_the_opening_hours_and_hears_them(appliance, tmp_path, sandbox, models_dir):
    dump = baresip_call(tmp_path / "phone", appliance.port, [(9.0, "What time are you open on Saturday?")],
                        seconds=12)
    appliance.events.collect(until=lambda e: isinstance(e, CallEnded), timeout=20)
    appliance.events.collect(timeout=2)
    finals = [e.text for e in appliance.events.of(AsrFinal)]
    assert any("saturday" in f.lower() for f in finals), finals
    spoken = [e.spoken for e in appliance.events.of(TtsFinished)]
    assert any("Saturday" in s for s in spoken), spoken
    heard = heard_by_caller(dump, models_dir)
    # The answer reached the caller's ear: Saturday nine to one.
    assert "riverside" in heard and re.search(r"saturday.{0,40}nine", heard), heard
    call = CallRecords(Path(sandbox["root"]) / "state" / "calls.db", readonly=True).list_calls()[0]
    assert call.outcome == "completed" and call.turn_count >= 3


