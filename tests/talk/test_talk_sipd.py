"""The talk line against a real sipd alone, on loopback: the call is answered, audio flows both
ways (the line's file reaches the in ring; what "ttsd" writes to the out ring is heard and
recorded), either side hangs up with BYE, a ringing call is CANCELled, and a refused or
unreachable call ends in one line that says why."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from talkutil import dominant_hz, loud_frames, tone, write_wav

from appliance.bench.sipdrive import EventLog, Sipd, free_port
from appliance.bus.messages import CallAnswered, CallEnded, CallStarted, CallHangup
from appliance.cli.main import cli
from appliance.audio import FRAME_SAMPLES
from appliance.ipc import RingReader, RingWriter
from appliance.speech import wavfile
from appliance.talk.line import WavLine
from appliance.talk.session import talk
from appliance.talk.uac import CallFailed, Uac


@pytest.fixture
def sipd(sandbox):
    s = Sipd(sandbox).start()
    yield s
    s.stop()


def caller_file(tmp_path: Path) -> Path:
    """0.2 s of silence, then 1 s of 700 Hz at 8 kHz (the line resamples it)."""
    return write_wav(tmp_path / "mic.wav", np.concatenate([np.zeros(1600, np.int16), tone(700, 1.0, 8000)]), 8000)


def start_talk(line, target: str, **kw) -> tuple[threading.Thread, dict]:
    """talk() on its own thread and loop, as the CLI runs it; the outcome lands in the dict."""
    box: dict = {}

    def run() -> None:
        async def go():
            uac = Uac(target, connect_timeout=kw.pop("connect_timeout", 4.0))
            box["uac"] = uac
            if "on_progress" in kw:
                uac.on_progress = kw.pop("on_progress")(uac, box)
            return await talk(line, uac, **kw)

        try:
            box["result"] = asyncio.run(go())
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            box["error"] = exc
        finally:
            line.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def follow_in_ring(shm_dir, call_id: str, limit_s: float = 20) -> list[np.ndarray]:
    reader = RingReader(shm_dir, call_id, "in")
    frames, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frames += [np.array(f.pcm) for f in reader.frames()]
        if reader.writer_state() == "closed" and not reader.available():
            break
        time.sleep(0.02)
    reader.close()
    return frames


@pytest.mark.parametrize("codec, wire", [("g722", "G722"), ("pcmu", "PCMU")])
def test_an_answered_call_carries_audio_both_ways_and_ends_with_our_bye(sipd, tmp_path, codec, wire):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    th, box = start_talk(WavLine(caller_file(tmp_path), tmp_path / "heard.wav"), f"sip:agent@127.0.0.1:{sipd.port}",
                         codec=codec, seconds=4)
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    assert events.of(CallAnswered)[0].codec == wire
    call_id = events.of(CallStarted)[0].call_id
    with RingWriter.attach(sipd.shm_dir, call_id, "out") as out:  # the agent speaks, as ttsd does
        for frame in tone(1200, 1.0, 16000).reshape(-1, FRAME_SAMPLES):
            out.write(frame)
    said = follow_in_ring(sipd.shm_dir, call_id)
    th.join(20)
    assert not th.is_alive() and "error" not in box, box
    result = box["result"]
    assert (result.ended_by, result.reason, result.bye_confirmed, result.codec) == ("us", "time up", True, wire)
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    ended = events.of(CallEnded)[0]
    assert ended.reason == "caller-hangup" and ended.metrics["lost"] == 0
    # the caller's second of 700 Hz reached the recogniser's ring, whole
    loud = [f for f in said if np.sqrt(np.mean(f.astype(float) ** 2)) > 1000]
    assert 47 <= len(loud) <= 53, len(loud)
    assert abs(dominant_hz(np.concatenate(loud[3:-3])) - 700) < 15
    # the agent's second of 1200 Hz was heard on the line and recorded
    heard, rate = wavfile.read(tmp_path / "heard.wav")
    agent = loud_frames(heard)
    assert rate == 16000 and 47 <= len(agent) <= 53, len(agent)
    assert abs(dominant_hz(np.concatenate(agent[3:-3])) - 1200) < 15
    assert result.stats.received >= 100 and result.stats.sent >= 100 and result.stats.foreign == 0
    events.close()


def test_when_the_far_end_hangs_up_the_line_does_too(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    th, box = start_talk(WavLine(caller_file(tmp_path)), f"sip:agent@127.0.0.1:{sipd.port}", seconds=60)
    events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=10)
    sipd.control(CallHangup(call_id=events.of(CallStarted)[0].call_id))  # as agentd ends a call
    th.join(20)
    assert not th.is_alive() and "error" not in box, box
    assert (box["result"].ended_by, box["result"].reason) == ("far end", "the far end hung up")
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    assert events.of(CallEnded)[0].reason == "agent-hangup"
    events.close()


def test_hanging_up_while_it_rings_cancels_the_call(sandbox, tmp_path):
    s = Sipd(sandbox, extra_sip="auto_answer = false\nanswer_timeout = 60").start()  # rings until agentd answers
    try:
        events = EventLog(s.run_dir)
        time.sleep(0.3)
        stop = asyncio.Event()

        def on_ringing(uac, box):
            def progress(status, reason):
                box.setdefault("progress", []).append(status)
                if status == 180:
                    stop.set()  # the person at the box gives up while it rings
            return progress

        th, box = start_talk(WavLine(caller_file(tmp_path)), f"sip:agent@127.0.0.1:{s.port}", stop=stop,
                             on_progress=on_ringing)
        th.join(20)
        assert not th.is_alive()
        assert isinstance(box.get("error"), CallFailed) and "before the call was answered" in str(box["error"])
        assert 180 in box["progress"]
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        assert events.of(CallEnded)[0].reason == "caller-cancelled"
        events.close()
    finally:
        s.stop()


def test_a_refused_call_says_why_and_exits_1(sandbox, tmp_path):
    s = Sipd(sandbox, extra_sip='allow_from = ["192.0.2.1"]').start()  # not us
    try:
        th, box = start_talk(WavLine(caller_file(tmp_path)), f"sip:agent@127.0.0.1:{s.port}")
        th.join(20)
        assert str(box["error"]) == (f"sip:agent@127.0.0.1:{s.port} refused the call: 403 Source Not Allowed: "
                                     "sipd refused this address (sip.allow_from) or the credentials")
        result = CliRunner().invoke(cli, ["--config", str(sandbox["config"]), "talk", "--in", str(caller_file(tmp_path))])
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == "appliancectl talk: " + str(box["error"])
        assert "Traceback" not in result.output
    finally:
        s.stop()


def test_nobody_listening_is_a_clear_error_not_a_hang(tmp_path):
    port = free_port()
    th, box = start_talk(WavLine(caller_file(tmp_path)), f"sip:agent@127.0.0.1:{port}", connect_timeout=1.0)
    th.join(20)
    assert not th.is_alive()
    assert str(box["error"]) == (f"no answer from 127.0.0.1:{port} within 1 s: is sipd running there? "
                                 "(appliancectl status)")


def test_the_cli_rings_the_configured_sipd_answering_its_digest_challenge(sandbox, tmp_path):
    s = Sipd(sandbox, extra_sip='auth_realm = "box"\nauth_users = { frontdesk = "s3cret" }').start()
    try:
        events = EventLog(s.run_dir)
        time.sleep(0.3)
        result = CliRunner().invoke(cli, ["--config", str(sandbox["config"]), "talk", "--in", str(caller_file(tmp_path)),
                                          "--out", str(tmp_path / "heard.wav"), "--seconds", "1.5"])
        assert result.exit_code == 0, result.output
        assert f"== ringing sip:agent@127.0.0.1:{s.port} from" in result.output
        assert "(time up); G722" in result.output
        events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
        assert events.of(CallEnded)[0].reason == "caller-hangup"
        assert s.status().details["refused_auth"] == 0
        events.close()
    finally:
        s.stop()


def test_ctrl_c_hangs_up_cleanly(sipd, tmp_path):
    events = EventLog(sipd.run_dir)
    time.sleep(0.3)
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "--config", str(sipd.config), "talk",
                             "--in", str(caller_file(tmp_path))], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        events.collect(until=lambda e: isinstance(e, CallAnswered), timeout=20)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "(stopped)" in out and "Traceback" not in err
    events.collect(until=lambda e: isinstance(e, CallEnded), timeout=10)
    assert events.of(CallEnded)[0].reason == "caller-hangup"
    events.close()
