"""Riva ASR/TTS backends against an in-process fake Riva server (tests/speech/riva_fake.py)
speaking the real gRPC services of nvidia-riva-client's protos, on 127.0.0.1 only.

Audio is tone bursts separated by silence; the fake "recognises" one word per burst with the
burst's true start/end, so word counts and times are checked against what was written."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

pytest.importorskip("riva.client")

from riva.client.proto import health_pb2, riva_audio_pb2  # noqa: E402
from riva_fake import FakeRiva, dead_address  # noqa: E402

from appliance.config.schema import AsrConfig, Config, TtsConfig  # noqa: E402
from appliance.speech.asr.base import Transcript  # noqa: E402
from appliance.speech.asr.riva import RivaAsr  # noqa: E402
from appliance.speech.errors import BackendError, ModelError  # noqa: E402
from appliance.speech.tts.riva import RivaTts  # noqa: E402

RATE = 16_000
FRAME = 320  # 20 ms, what asrd feeds
TOL = 0.04
LINEAR_PCM = riva_audio_pb2.AudioEncoding.LINEAR_PCM


def bursts(spans, total_s: float, seed: int = 0) -> np.ndarray:
    """``total_s`` of faint noise (RMS ~30) with a 440 Hz tone (RMS ~5700) over each (start, end) span."""
    rng = np.random.default_rng(seed)
    n = int(round(total_s * RATE))
    pcm = rng.normal(0, 30, n)
    t = np.arange(n) / RATE
    for start, end in spans:
        a, b = int(round(start * RATE)), int(round(end * RATE))
        pcm[a:b] += 8000 * np.sin(2 * np.pi * 440 * t[a:b])
    return np.clip(pcm, -32768, 32767).astype(np.int16)


def feed_frames(stream, pcm: np.ndarray, pace_s: float = 0.0) -> None:
    for i in range(0, len(pcm), FRAME):
        stream.feed(pcm[i:i + FRAME])
        if pace_s:
            time.sleep(pace_s)


def assert_words(transcript: Transcript, spans, names) -> None:
    assert [w.text for w in transcript.words] == list(names), transcript
    for word, (start, end) in zip(transcript.words, spans):
        assert abs(word.start - start) <= TOL, (word, start)
        assert abs(word.end - end) <= TOL, (word, end)
        assert 0.0 <= word.conf <= 1.0
    assert transcript.text == " ".join(names)


@pytest.fixture
def fake():
    server = FakeRiva()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def asr(fake):
    backend = RivaAsr(fake.address, timeout_s=2.0)
    yield backend
    backend.close()


class Partials:
    def __init__(self):
        self.calls: list[tuple[str, bool]] = []
        self.event = threading.Event()

    def __call__(self, text: str, stable: bool) -> None:
        self.calls.append((text, stable))
        self.event.set()


# -- ASR: what is sent ------------------------------------------------------------------------------
def test_stream_sends_the_configured_recognition_config(fake):
    backend = RivaAsr(fake.address, language="en-US", boost_words=("Zorblax", "Acme Corp"), boost_score=42.5)
    stream = backend.open_stream(lambda text, stable: None)
    stream.feed(bursts([(0.1, 0.3)], 0.5))
    stream.finish(2.0)
    backend.close()
    assert len(fake.streaming_configs) == 1
    sc = fake.streaming_configs[0]
    assert sc.interim_results is True
    cfg = sc.config
    assert cfg.encoding == LINEAR_PCM
    assert cfg.sample_rate_hertz == 16000
    assert cfg.audio_channel_count == 1
    assert cfg.language_code == "en-US"
    assert cfg.max_alternatives == 1
    assert cfg.enable_word_time_offsets and cfg.enable_automatic_punctuation
    assert len(cfg.speech_contexts) == 1
    assert list(cfg.speech_contexts[0].phrases) == ["Zorblax", "Acme Corp"]
    assert cfg.speech_contexts[0].boost == pytest.approx(42.5)
    assert not cfg.HasField("endpointing_config")


def test_no_boost_context_without_words_and_endpointing_passes_through(fake):
    backend = RivaAsr(fake.address, endpointing={"stop_history": 800, "stop_threshold": 0.3})
    backend.transcribe(bursts([(0.1, 0.3)], 0.5), 2.0)
    cfg = fake.asr_configs[-1]
    assert len(cfg.speech_contexts) == 0
    assert cfg.endpointing_config.stop_history == 800
    assert cfg.endpointing_config.stop_threshold == pytest.approx(0.3)
    with pytest.raises(ValueError):
        RivaAsr(fake.address, endpointing={"stop_hist": 1}).recognition_config()
    backend.close()


def test_from_config_takes_the_riva_keys():
    cfg = AsrConfig(backend="riva", riva_server="10.0.0.7:50051", riva_language="de-DE", boost_words=["Acme"],
              boost_score=7.0, timeout_s=3.0)
    backend = RivaAsr.from_config(cfg)
    assert (backend.server, backend.language, backend.boost_words, backend.boost_score, backend.timeout_s) == \
        ("10.0.0.7:50051", "de-DE", ["Acme"], 7.0, 3.0)
    assert backend.name == "riva" and backend.streaming
    backend.close()
    tts = RivaTts.from_config(TtsConfig(backend="riva", riva_server="10.0.0.7:50051", riva_voice="English-US.Male-1",
                                  riva_language="en-GB", timeout_s=4.0))
    assert (tts.server, tts.voice, tts.language, tts.sample_rate, tts.timeout_s) == \
        ("10.0.0.7:50051", "English-US.Male-1", "en-GB", 16000, 4.0)
    tts.close()


# -- ASR: streaming results ---------------------------------------------------------------------------
def test_partials_arrive_while_feeding_then_final_words_match_bursts(fake, asr):
    spans = [(0.20, 0.50), (0.80, 1.00), (1.40, 2.00)]
    pcm = bursts(spans, 2.3)
    partials = Partials()
    stream = asr.open_stream(partials)
    cut = int(0.7 * RATE)
    feed_frames(stream, pcm[:cut])
    assert partials.event.wait(2.0), "no partial before the end of the audio"
    assert partials.calls[0][0].startswith("alpha")
    feed_frames(stream, pcm[cut:])
    transcript = stream.finish(2.0)
    n_partials = len(partials.calls)
    assert_words(transcript, spans, ["alpha", "bravo", "charlie"])
    assert transcript.confidence == pytest.approx(0.9, abs=1e-6)
    assert transcript.meta["finals"] == 1
    # interim results while a burst was still going are unstable, after it ended stable
    assert any(not stable for _, stable in partials.calls)
    assert any(stable for _, stable in partials.calls)
    assert any(text.startswith("alpha bravo") for text, _ in partials.calls)
    assert all(text for text, _ in partials.calls)
    time.sleep(0.05)
    assert len(partials.calls) == n_partials, "partials after the final"


def test_several_final_results_are_joined(fake):
    fake.final_gap_s = 0.3  # the fake endpoints after 300 ms of silence, as Riva does
    spans = [(0.10, 0.30), (1.00, 1.20), (1.30, 1.50)]
    backend = RivaAsr(fake.address)
    partials = Partials()
    stream = backend.open_stream(partials)
    feed_frames(stream, bursts(spans, 1.6))
    transcript = stream.finish(2.0)
    backend.close()
    assert transcript.meta["finals"] == 2  # "alpha" at the endpoint, "bravo charlie" at the end
    assert_words(transcript, spans, ["alpha", "bravo", "charlie"])
    # after the first final, partials carry it in front of the interim words
    assert any(text.startswith("alpha bravo") for text, _ in partials.calls)


@pytest.mark.parametrize("offline", [False, True], ids=["stream", "recognize"])
def test_transcribe_whole_utterance(fake, offline):
    spans = [(0.12, 0.40), (0.60, 0.66), (0.90, 1.30)]
    backend = RivaAsr(fake.address, offline=offline, boost_words=["Acme"])
    transcript = backend.transcribe(bursts(spans, 1.5), 2.0)
    backend.close()
    assert_words(transcript, spans, ["alpha", "bravo", "charlie"])
    assert transcript.meta["backend"] == "riva"
    assert transcript.meta["audio_processed"] == pytest.approx(1.5, abs=0.02)
    cfg = fake.asr_configs[-1]
    assert cfg.sample_rate_hertz == 16000 and cfg.encoding == LINEAR_PCM
    assert list(cfg.speech_contexts[0].phrases) == ["Acme"]
    assert len(fake.streaming_configs) == (0 if offline else 1)


def test_silence_gives_empty_text(asr):
    assert asr.transcribe(bursts([], 0.5), 2.0).text == ""
    empty = asr.transcribe(np.zeros(0, np.int16), 2.0)
    assert empty.text == "" and empty.words == ()
    with pytest.raises(ValueError):
        asr.transcribe(np.zeros(100, np.float32), 2.0)


def test_two_streams_at_once_do_not_mix(fake, asr):
    a_spans = [(0.10, 0.30), (0.70, 0.90)]
    b_spans = [(0.20, 0.26), (0.40, 0.60), (1.00, 1.20)]
    a_pcm, b_pcm = bursts(a_spans, 1.3, seed=1), bursts(b_spans, 1.3, seed=2)
    a_partials, b_partials = Partials(), Partials()
    a, b = asr.open_stream(a_partials), asr.open_stream(b_partials)
    threads = [threading.Thread(target=feed_frames, args=(a, a_pcm, 0.001)),
               threading.Thread(target=feed_frames, args=(b, b_pcm, 0.001))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = {}

    def finish(name, stream):
        results[name] = stream.finish(2.0)

    finishers = [threading.Thread(target=finish, args=("a", a)), threading.Thread(target=finish, args=("b", b))]
    for t in finishers:
        t.start()
    for t in finishers:
        t.join()
    assert_words(results["a"], a_spans, ["alpha", "bravo"])
    assert_words(results["b"], b_spans, ["alpha", "bravo", "charlie"])
    assert all(len(text.split()) <= 2 for text, _ in a_partials.calls)
    assert any(len(text.split()) == 3 for text, _ in b_partials.calls)


def test_abort_cancels_the_server_call(fake, asr):
    stream = asr.open_stream(lambda text, stable: None)
    feed_frames(stream, bursts([(0.1, 0.3)], 0.4))
    time.sleep(0.1)
    stream.abort()
    assert fake.cancel_event.wait(2.0)
    assert fake.cancelled == ["StreamingRecognize"]
    assert fake.wait_idle()
    stream.feed(bursts([], 0.1))  # ignored after abort
    with pytest.raises(BackendError):
        stream.finish(0.5)


# -- ASR: failures ------------------------------------------------------------------------------------
def test_server_down_is_a_backend_error_naming_it():
    address = dead_address()
    backend = RivaAsr(address, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"{address}.*UNAVAILABLE"):
        backend.transcribe(bursts([(0.1, 0.3)], 0.5), 1.0)
    stream = backend.open_stream(lambda text, stable: None)
    stream.feed(bursts([(0.1, 0.3)], 0.5))
    with pytest.raises(BackendError, match=f"{address}.*UNAVAILABLE"):
        stream.finish(1.0)
    assert time.monotonic() - started < 2.0
    backend.close()


def test_check_unreachable_is_a_model_error_naming_it():
    address = dead_address()
    for backend in (RivaAsr(address), RivaTts(address)):
        started = time.monotonic()
        with pytest.raises(ModelError, match=f"Riva server at {address} not reachable"):
            backend.check(timeout=0.4)
        assert time.monotonic() - started < 1.4
        backend.close()


def test_check_passes_on_a_serving_server_and_fails_without_models(fake):
    asr, tts = RivaAsr(fake.address), RivaTts(fake.address)
    asr.check(timeout=1.0)
    tts.check(timeout=1.0)
    fake.asr_models = 0
    fake.tts_models = 0
    with pytest.raises(ModelError, match="no ASR model"):
        asr.check(timeout=1.0)
    with pytest.raises(ModelError, match="no TTS model"):
        tts.check(timeout=1.0)
    fake.health = health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(ModelError, match="not serving"):
        asr.check(timeout=1.0)
    asr.close()
    tts.close()


def test_make_asr_and_make_tts_build_and_check_riva(fake):
    from appliance.speech.backends import make_asr, make_tts

    config = Config(asr=AsrConfig(backend="riva", riva_server=fake.address, timeout_s=1.0),
                    tts=TtsConfig(backend="riva", riva_server=fake.address, timeout_s=1.0))
    assert isinstance(make_asr(config), RivaAsr)
    assert isinstance(make_tts(config), RivaTts)
    down = Config(asr=AsrConfig(backend="riva", riva_server=dead_address(), timeout_s=0.5))
    with pytest.raises(ModelError, match="not reachable"):
        make_asr(down)


@pytest.mark.parametrize("after_audio", [0, 2])
def test_server_abort_is_a_backend_error(fake, asr, after_audio):
    fake.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many streams")
    fake.abort_after_audio = after_audio
    stream = asr.open_stream(lambda text, stable: None)
    feed_frames(stream, bursts([(0.1, 0.3)], 1.0))
    with pytest.raises(BackendError, match=f"{fake.address}.*RESOURCE_EXHAUSTED.*too many streams"):
        stream.finish(2.0)
    offline = RivaAsr(fake.address, offline=True)
    with pytest.raises(BackendError, match="RESOURCE_EXHAUSTED"):
        offline.transcribe(bursts([(0.1, 0.3)], 0.5), 2.0)
    offline.close()
    assert fake.cancelled == []


def test_unknown_language_is_a_backend_error(fake):
    backend = RivaAsr(fake.address, language="xx-XX")
    with pytest.raises(BackendError, match="INVALID_ARGUMENT.*Unavailable model"):
        backend.transcribe(bursts([(0.1, 0.3)], 0.5), 2.0)
    backend.close()


@pytest.mark.parametrize("how", ["finish", "transcribe", "recognize"])
def test_slow_server_times_out_and_is_cancelled(fake, asr, how):
    fake.delay_s = 5.0
    pcm = bursts([(0.1, 0.3)], 0.5)
    started = time.monotonic()
    with pytest.raises(BackendError, match=fake.address):
        if how == "finish":
            stream = asr.open_stream(lambda text, stable: None)
            stream.feed(pcm)
            stream.finish(0.5)
        elif how == "transcribe":
            asr.transcribe(pcm, 0.5)
        else:
            RivaAsr(fake.address, offline=True).transcribe(pcm, 0.5)
    assert time.monotonic() - started < 1.5
    assert fake.cancel_event.wait(1.0), "the server call was not cancelled"
    assert fake.wait_idle()


def test_partial_callback_errors_do_not_break_the_stream(fake, asr):
    def bad(text, stable):
        raise RuntimeError("caller bug")

    stream = asr.open_stream(bad)
    feed_frames(stream, bursts([(0.1, 0.3)], 0.6))
    assert stream.finish(2.0).text == "alpha"


# -- TTS ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [16000, 22050])
def test_tts_yields_int16_at_the_asked_rate_and_length(fake, rate):
    tts = RivaTts(fake.address, voice="English-US.Female-1", language="en-US", sample_rate=rate)
    text = "Hello, how can I help?"
    chunks = list(tts.synthesize(text))
    tts.close()
    assert len(chunks) == fake.tts_chunks
    assert all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    pcm = np.concatenate(chunks)
    assert len(pcm) == round(len(text) * fake.tts_s_per_char * rate)  # 1.1 s
    assert tts.sample_rate == rate
    crossings = np.count_nonzero(np.diff(np.signbit(pcm[: rate // 2].astype(np.int32))))
    assert crossings / 2 / 0.5 == pytest.approx(220, abs=5)  # the tone survived the byte format
    req = fake.tts_requests[0]
    assert (req.text, req.sample_rate_hz, req.encoding, req.voice_name, req.language_code) == \
        (text, rate, LINEAR_PCM, "English-US.Female-1", "en-US")


def test_tts_default_voice_is_left_to_the_server(fake):
    tts = RivaTts(fake.address)
    assert list(tts.synthesize("   ")) == []
    assert len(np.concatenate(list(tts.synthesize("hi")))) == round(2 * 0.05 * 16000)
    assert fake.tts_requests[0].voice_name == ""
    tts.close()


def test_tts_early_close_cancels_the_server_call(fake):
    fake.tts_chunks, fake.tts_chunk_delay_s = 20, 0.05
    tts = RivaTts(fake.address)
    gen = tts.synthesize("a long sentence that takes a while to say")
    first = next(gen)
    assert len(first) > 0
    gen.close()
    assert fake.cancel_event.wait(1.0)
    assert fake.cancelled == ["SynthesizeOnline"]
    assert fake.wait_idle()
    tts.close()


def test_tts_failures_are_backend_errors(fake):
    address = dead_address()
    with pytest.raises(BackendError, match=f"{address}.*UNAVAILABLE"):
        list(RivaTts(address).synthesize("hello"))
    fake.abort = (grpc.StatusCode.INTERNAL, "vocoder exploded")
    with pytest.raises(BackendError, match=f"{fake.address}.*INTERNAL.*vocoder exploded"):
        list(RivaTts(fake.address).synthesize("hello"))
    with pytest.raises(BackendError, match="INVALID_ARGUMENT"):
        fake.abort = None
        list(RivaTts(fake.address, voice="No-Such-Voice").synthesize("hello"))


def test_tts_slow_server_times_out_and_is_cancelled(fake):
    fake.delay_s = 5.0
    tts = RivaTts(fake.address, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"{fake.address}.*within 0.5 s"):
        list(tts.synthesize("hello"))
    assert time.monotonic() - started < 1.5
    assert fake.cancel_event.wait(1.0)
    tts.close()
