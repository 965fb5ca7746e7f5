"""asrd and ttsd as real processes with the Riva backends, against the proto-level fake Riva
server: what a GPU box runs, minus the GPU."""

from __future__ import annotations

import time

import numpy as np
import pytest
from riva_fake import FakeRiva

from appliance.bench.speechdrive import play, read_all, synthetic_speech
from appliance.bus.messages import AsrFinal, AsrPartial, TtsSay, SpeechStarted, TtsFinished
from appliance.ipc import RingReader


@pytest.fixture
def riva():
    server = FakeRiva(vocabulary=("alpha", "bravo", "charlie", "delta"))
    server.start()
    yield server
    server.stop()


def test_asrd_streams_to_riva_and_publishes_partials_then_a_final(service, speech_config, calls, events, riva, sandbox):
    speech_config.add(f'[asr]\nbackend = "riva"\nriva_server = "{riva.address}"\nboost_words = ["Riverside", "Acme"]')
    asrd = service("asrd")
    writer = calls.attach(asrd, "r1")["r1"]
    speech = synthetic_speech("Please book me in for Tuesday morning at the Riverside branch.")
    play(writer, np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(16000, np.int16)]), speed=2)
    events.collect(lambda e: isinstance(e, AsrFinal), timeout=15)
    started = events.of(SpeechStarted)[0]
    partials, (final,) = events.of(AsrPartial), events.of(AsrFinal)
    assert partials, "no partial transcripts from the streaming backend"
    assert all(p.utterance == started.utterance == final.utterance for p in partials)
    assert max(events.events.index(p) for p in partials) < events.events.index(final)
    vocab = {"alpha", "bravo", "charlie", "delta"}
    assert final.text and set(final.text.split()) <= vocab  # what the fake heard, word by word
    assert len(final.words) == len(final.text.split())
    assert final.start_ns <= final.words[0]["start_ns"] < final.words[-1]["end_ns"] <= final.end_ns + 400_000_000
    (config,) = [c for c in riva.asr_configs]
    assert config.sample_rate_hertz == 16000 and config.language_code == "en-US"
    boosted = {p for ctx in config.speech_contexts for p in ctx.phrases}
    assert boosted == {"Riverside", "Acme"}


def test_asrd_with_riva_down_exits_with_the_address(service, speech_config):
    speech_config.add('[asr]\nbackend = "riva"\nriva_server = "127.0.0.1:1"')
    asrd = service("asrd", wait_ready=False)
    assert asrd.proc.wait(30) != 0
    assert "127.0.0.1:1" in asrd.output() and "Traceback" not in asrd.output()


def test_ttsd_speaks_through_riva(service, speech_config, calls, events, riva):
    speech_config.add(f'[tts]\nbackend = "riva"\nriva_server = "{riva.address}"\nfallback = false')
    ttsd = service("ttsd")
    assert ttsd.status().details["backend"] == "riva"
    calls.start_call("r2")
    import tomllib

    shm = tomllib.loads(speech_config.path.read_text())["paths"]["shm_dir"]
    reader = RingReader(shm, "r2", "out")
    ttsd.control(TtsSay(call_id="r2", turn="t", text="Hello there."))
    chunks, deadline = [], time.monotonic() + 15
    while not events.of(TtsFinished) and time.monotonic() < deadline:
        events.collect(timeout=0.02)
        chunks.append(read_all(reader))
    chunks.append(read_all(reader))
    pcm = np.concatenate(chunks).astype(np.float64)
    (request,) = riva.tts_requests
    assert request.sample_rate_hz == 16000 and request.text == "Hello there."
    voiced = pcm[np.abs(pcm) > 1000]
    assert abs(len(voiced) / 16000 - len("Hello there.") * riva.tts_s_per_char) < 0.1
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * 16000 / len(pcm) - riva.tts_tone_hz) < 5
