"""A real softphone (baresip) calls the whole appliance and talks to the example agent; what
the caller heard is transcribed back and checked, and the call record must match."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import soxr

from appliance.agent.records import CallRecords
from appliance.bench.calldrive import baresip_call, caller_voice, write_ulaw_wav
from appliance.bench.callers import BookingCaller
from appliance.bench.sipdrive import sipp, sipp_counts
from appliance.bench.softphone import Softphone, converse
from appliance.bench.wiretap import RtpTap
from appliance.bus.messages import AsrFinal, CallEnded, TtsFinished
from appliance.speech import wavfile
from appliance.speech.textnorm import for_wer


def heard_by_caller(dump: Path | np.ndarray, models_dir: Path, rate: int = 8000) -> str:
    """What the caller heard (a recording, or 8 kHz PCM off the wire), transcribed back."""
    from appliance.speech.asr.whisper import WhisperAsr

    pcm, rate = wavfile.read(dump) if isinstance(dump, Path) else (dump, rate)
    pcm16 = (np.clip(soxr.resample(pcm.astype(np.float32) / 32768, rate, 16000), -1, 1) * 32767).astype(np.int16)
    asr = WhisperAsr(models_dir / "whisper-base-en")
    # Transcribe in 20 s pieces cut at silence-ish points: Whisper's window is 30 s.
    out, step = [], 16000 * 20
    for i in range(0, len(pcm16), step):
        out.append(asr.transcribe(pcm16[i:i + step], 30).text)
    return for_wer(" ".join(out))


def says_saturday_hours(heard: str) -> bool:
    """The greeting and the answer reached the caller's ear: "... Riverside ... open Monday to
    Friday from nine a.m. to five p.m.; we're closed on Saturday and Sunday" (the example agent's
    [hours]; 8 kHz Whisper sometimes hears "nine a m" as "may to m")."""
    return "riverside" in heard and re.search(r"(nine|five p).{0,60}closed on saturday", heard) is not None


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
    assert says_saturday_hours(heard), heard
    call = finished_call(sandbox)
    assert call.outcome == "completed" and call.turn_count >= 3




def finished_call(sandbox):
    """The call's record once agentd has closed it (it does so on call.ended, just after)."""
    records = CallRecords(Path(sandbox["root"]) / "state" / "calls.db", readonly=True)
    for _ in range(100):
        call = records.get_call(records.list_calls()[0].id)
        if call.outcome != "in-progress":
            break
        time.sleep(0.1)
    return call


@pytest.mark.timeout(300)
def test_a_booking_made_by_voice_lands_in_the_booking_system_and_the_record(appliance, tmp_path, sandbox):
    """The caller answers what the agent asks (a misheard turn is simply asked again), books an
    appointment, and the booking exists in the clinic's system and in the call record."""
    import sqlite3

    phone = Softphone(tmp_path / "phone")
    caller = BookingCaller(ask_hours=False)
    try:
        phone.dial(f"sip:agent@127.0.0.1:{appliance.port}")
        converse(phone, appliance.events, caller, timeout=150)
        appliance.events.collect(until=lambda e: isinstance(e, CallEnded), timeout=20)
    finally:
        phone.close()
    call = finished_call(sandbox)
    transcript = [(t.role, t.text) for t in call.turns]
    with sqlite3.connect(appliance.booking.server.db_path) as db:
        rows = db.execute("SELECT name, time FROM appointments").fetchall()
    assert len(rows) == 1 and "smith" in rows[0][0].lower() and rows[0][1] == "10:00", (rows, transcript)
    booked = [t for t in call.tools if t.status == "ok"]
    assert [t.tool for t in booked] == ["book_appointment"], transcript
    assert booked[0].args["name"] == rows[0][0] and booked[0].args["time"] == "10:00"
    assert caller.confirmed and any("booked" in text for role, text in transcript if role == "agent"), transcript
    assert call.outcome == "completed", (call.outcome, appliance.services["agentd"].output()[-4000:])


def test_a_sipp_caller_asks_the_hours_and_the_rtp_it_receives_says_them(appliance, tmp_path, models_dir):
    """SIPp places the call and streams the question as PCMU; what sipd sent back to it is
    taken off the loopback wire (SIPp cannot record) and transcribed."""
    question = caller_voice("What time are you open on Saturday?")
    caller = np.concatenate([np.zeros(8000 * 9, np.int16), question, np.zeros(8000 * 12, np.int16)])
    write_ulaw_wav(tmp_path / "caller.wav", caller)
    try:
        tap = RtpTap(appliance.rtp_ports)
    except PermissionError:
        pytest.skip("capturing on lo needs root or CAP_NET_RAW")
    with tap:
        out = sipp("uac_speak.xml", appliance.port, cwd=str(tmp_path), extra=["-d", str(len(caller) // 8)],
                   timeout=60).stdout
    assert sipp_counts(out) == (1, 0), out
    appliance.events.collect(until=lambda e: isinstance(e, CallEnded), timeout=20)
    assert any("saturday" in e.text.lower() for e in appliance.events.of(AsrFinal)), appliance.events.of(AsrFinal)
    received = tap.audio()
    assert len(received) > 8000 * 20, len(received)  # the whole call's RTP, silence included
    assert tap.missing() == 0, f"{tap.missing()} RTP packets missing from the capture"
    heard = heard_by_caller(received, models_dir)
    assert says_saturday_hours(heard), heard
