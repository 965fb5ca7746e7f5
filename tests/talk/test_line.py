"""The talk lines without a call: WAV files as microphone and recorder, and the sound-card line
(its resampling and bounded queues through a stand-in sounddevice module; its errors through
the real one) — none of it needs a sound card."""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner
from talkutil import dominant_hz, rms, tone, write_wav

from appliance.cli.main import cli
from appliance.speech import wavfile
from appliance.audio import FRAME_SAMPLES as FRAME
from appliance.talk.line import LineError, SoundDeviceLine, WavLine


def test_a_wav_of_any_rate_is_said_as_16khz_frames_then_silence_and_what_is_heard_is_recorded(tmp_path):
    stereo = np.repeat(tone(440, 0.5, 8000), 2)  # 8 kHz, both channels the same
    mic = write_wav(tmp_path / "mic.wav", stereo, 8000, channels=2)
    line = WavLine(mic, tmp_path / "heard.wav")
    said = [line.read() for _ in range(40)]
    assert all(len(f) == FRAME and f.dtype == np.int16 for f in said)
    assert line.mic_done and line.mic_seconds == pytest.approx(0.5, abs=0.02)
    speech = np.concatenate(said[:25])
    assert abs(dominant_hz(speech[1600:-1600]) - 440) < 10 and 0.8 < rms(speech[1600:-1600]) / rms(tone(440, 1, 8000)) < 1.2
    assert not np.any(np.concatenate(said[26:]))  # after the file: silence
    for i in range(3):
        line.write(np.full(FRAME, i + 1, np.int16))
    line.close()
    heard, rate = wavfile.read(tmp_path / "heard.wav")
    assert rate == 16000 and list(heard[::FRAME]) == [1, 2, 3] and len(heard) == 3 * FRAME


def test_unusable_wav_files_are_one_line_errors(tmp_path):
    with pytest.raises(LineError, match="not a readable WAV"):
        WavLine(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(LineError, match="not a readable WAV"):
        WavLine(tmp_path / "text.wav")
    eight = write_wav(tmp_path / "8bit.wav", np.full(800, 128, np.uint8), 8000, width=1)
    with pytest.raises(LineError, match="8-bit samples"):
        WavLine(eight)
    # cut off mid-frame (a copy that did not finish): the whole frames are read, no traceback
    cut = write_wav(tmp_path / "cut.wav", np.full(1600, 1000, np.int16), 16000, channels=2)
    cut.write_bytes(cut.read_bytes()[:-3])
    assert WavLine(cut).mic_seconds == pytest.approx(799 / 16000, abs=FRAME / 16000)


class FakeStream:
    def __init__(self, **kw):
        self.kw = kw
        self.started = self.closed = False

    def start(self):
        self.started = True

    def stop(self):
        pass

    def close(self):
        self.closed = True


def fake_sounddevice(in_rate: int, out_rate: int) -> types.ModuleType:
    """The parts of sounddevice the line uses, for a USB handset at 48 kHz in / 44.1 kHz out."""
    sd = types.ModuleType("sounddevice")
    sd.PortAudioError = type("PortAudioError", (Exception,), {})
    devices = {"input": {"index": 3, "name": "USB handset", "default_samplerate": float(in_rate),
                         "max_input_channels": 1, "max_output_channels": 0},
               "output": {"index": 4, "name": "USB handset out", "default_samplerate": float(out_rate),
                          "max_input_channels": 0, "max_output_channels": 2}}
    sd.query_devices = lambda device=None, kind=None: devices[kind]
    sd.streams = []

    def stream(**kw):
        sd.streams.append(FakeStream(**kw))
        return sd.streams[-1]

    sd.InputStream = sd.OutputStream = stream
    return sd


def test_the_sound_card_line_resamples_both_ways_at_the_devices_own_rates(monkeypatch):
    sd = fake_sounddevice(48000, 44100)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    line = SoundDeviceLine("3,4", queue_frames=100)
    instream, outstream = sd.streams
    assert instream.started and instream.kw["samplerate"] == 48000 and instream.kw["blocksize"] == 960
    assert outstream.kw["samplerate"] == 44100 and outstream.kw["device"] == 4 and instream.kw["channels"] == 1
    # the microphone: 1 s of 1 kHz in 20 ms blocks at 48 kHz -> 16 kHz frames of 320
    mic = tone(1000, 1.0, 48000)
    for block in mic.reshape(-1, 960):
        line._on_input(block[:, None], 960, None, None)
    said = [line.read() for _ in range(50)]
    assert sum(rms(f) > 1000 for f in said) >= 47  # all but the resampler's start-up latency
    assert abs(dominant_hz(np.concatenate(said[5:])) - 1000) < 10
    assert not np.any(line.read())  # nothing more captured: silence, never a wait
    # the earpiece: 16 kHz frames of 500 Hz -> 882-sample blocks at 44.1 kHz
    for frame in tone(500, 1.0, 16000).reshape(-1, FRAME):
        line.write(frame)
    blocks = []
    for _ in range(50):
        out = np.zeros((882, 1), np.int16)
        line._on_output(out, 882, None, None)
        blocks.append(out[:, 0].copy())
    played = np.concatenate(blocks)
    assert abs(dominant_hz(played[4410:], 44100) - 500) < 10 and rms(played[4410:]) > 4000
    line.close()
    assert instream.closed and outstream.closed


def test_the_sound_card_line_drops_old_audio_rather_than_fall_behind(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(16000, 16000))
    line = SoundDeviceLine(queue_frames=4)
    for i in range(10):  # ten frames captured while nobody read
        line._on_input(np.full((320, 1), i, np.int16), 320, None, None)
    assert [int(line.read()[0]) for _ in range(5)] == [6, 7, 8, 9, 0]  # the newest four, then silence


def sounddevice_or_skip():
    try:
        importlib.import_module("sounddevice")
    except (ImportError, OSError) as exc:
        pytest.skip(f"sounddevice cannot load here: {exc}")


def test_a_device_that_is_not_there_is_a_clear_error_not_a_traceback(tmp_path):
    sounddevice_or_skip()
    with pytest.raises(LineError) as err:
        SoundDeviceLine("99")
    assert str(err.value) == "no sound input device 99 (appliancectl talk --list-devices lists them)"
    config = tmp_path / "appliance.toml"
    config.write_text(f'[paths]\nrun_dir = "{tmp_path}/run"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "talk", "--device", "99"])
    assert result.exit_code == 2, result.output
    assert result.output == "appliancectl talk: no sound input device 99 (appliancectl talk --list-devices lists them)\n"
    listed = CliRunner().invoke(cli, ["talk", "--list-devices"])
    assert listed.exit_code == 0 and listed.output.strip(), listed.output


class NoPortAudio(importlib.abc.MetaPathFinder):
    """What importing sounddevice does on a box without libportaudio2."""

    def find_spec(self, name, path, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")


def test_a_missing_portaudio_library_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(LineError, match=r"^the PortAudio library is not installed \(Debian: apt install libportaudio2\)$"):
        SoundDeviceLine()
    result = CliRunner().invoke(cli, ["talk", "--list-devices"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output == "appliancectl talk: the PortAudio library is not installed (Debian: apt install libportaudio2)\n"


def test_bad_usage_exits_2(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text(f'[paths]\nrun_dir = "{tmp_path}/run"\n')
    mic = write_wav(tmp_path / "mic.wav", tone(440, 0.2, 16000), 16000)
    for args in (["--out", str(tmp_path / "o.wav")], ["--in", str(mic), "--device", "1"],
                 ["--in", str(mic), "--to", "http://example.com"], ["--codec", "opus"]):
        result = CliRunner().invoke(cli, ["--config", str(config), "talk", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_the_live_view_shows_only_this_lines_call():
    from appliance.bus.messages import AsrFinal, CallStarted
    from appliance.cli.talk import CallEvents

    def final(call_id, text):
        return AsrFinal(call_id=call_id, utterance=1, text=text, digits=text, confidence=1.0, start_ns=0, end_ns=1,
                        latency_ms=0.0)

    log = types.SimpleNamespace(events=[
        CallStarted(call_id="cPBX", caller="+1555", callee="agent", headers={"Call-ID": "other@pbx"}),
        final("cPBX", "a caller from the PBX"),
        CallStarted(call_id="cLINE", caller="talk", callee="agent", headers={"Call-ID": "ours@127.0.0.1"}),
        final("cLINE", "the person at the box"),
    ], collect=lambda timeout: None)
    view = CallEvents(log, lambda: "ours@127.0.0.1")
    assert [getattr(e, "text", "started") for e in view.events] == ["started", "the person at the box"]
