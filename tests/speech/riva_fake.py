"""A fake Riva server: the real gRPC services from nvidia-riva-client's own protos, in process,
on 127.0.0.1 and an ephemeral port.

Recognition is deterministic and comes from the audio itself: every contiguous run of 20 ms
windows whose RMS is above ``rms_threshold`` is one "word", named from ``vocabulary`` in turn,
with start/end offsets (ms) at that run's true edges. So a test writes tone bursts separated
by silence and checks the word count and times. Streams get an interim result
(``is_final=False``) every ``interim_every_s`` of audio (stability 0.9 when the last word has
ended, 0.1 while it is still going), a final result per endpoint when ``final_gap_s`` is set
(words followed by that much silence), and a final result for the rest at the stream's end.

Synthesis is a ``tts_tone_hz`` sine lasting ``tts_s_per_char`` per character, at the
requested rate, int16, in ``tts_chunks`` chunks ``tts_chunk_delay_s`` apart.

Faults: ``delay_s`` (before any answer: the final result, the first audio chunk, a unary
reply), ``abort`` = (grpc.StatusCode, details) after ``abort_after_audio`` audio requests (or
at once for the other calls), ``health`` = the health status served, ``asr_models`` /
``tts_models`` = how many models the config calls list.

Records: ``asr_configs`` (every RecognitionConfig received, streaming or not),
``streaming_configs``, ``tts_requests``, ``cancelled`` (method names whose call the client
cancelled, in order) and ``cancel_event`` (set at each cancel), ``active`` (calls running).
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
from riva.client.proto import (health_pb2, health_pb2_grpc, riva_asr_pb2, riva_asr_pb2_grpc, riva_audio_pb2,
                               riva_tts_pb2, riva_tts_pb2_grpc)

LINEAR_PCM = riva_audio_pb2.AudioEncoding.LINEAR_PCM


def segments(pcm: np.ndarray, rate: int, threshold: float, window_s: float = 0.02) -> list[tuple[float, float]]:
    """(start_s, end_s) of each run of windows with RMS above ``threshold``; the last window
    counts only when whole."""
    win = max(1, int(round(rate * window_s)))
    n = len(pcm) // win
    if n == 0:
        return []
    frames = pcm[: n * win].astype(np.float64).reshape(n, win)
    voiced = np.sqrt((frames ** 2).mean(axis=1)) > threshold
    out, start = [], None
    for i, v in enumerate(voiced):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start * win / rate, i * win / rate))
            start = None
    if start is not None:
        out.append((start * win / rate, n * win / rate))
    return out


class _Call:
    """Per-call bookkeeping: a cancel event set when the client goes away before we finish."""

    def __init__(self, fake: "FakeRiva", method: str, context):
        self.fake, self.method, self.finished = fake, method, False
        self.gone = threading.Event()
        with fake._lock:
            fake.active += 1
        context.add_callback(self._terminated)

    def _terminated(self) -> None:
        with self.fake._lock:
            self.fake.active -= 1
            if not self.finished:
                self.fake.cancelled.append(self.method)
        self.gone.set()
        if not self.finished:
            self.fake.cancel_event.set()

    def sleep(self, seconds: float) -> bool:
        """True when the whole delay passed, False when the client went away meanwhile."""
        return not self.gone.wait(seconds) if seconds > 0 else not self.gone.is_set()

    def done(self) -> None:
        self.finished = True

    def abort(self, context, code: grpc.StatusCode, details: str) -> None:
        """End the call with ``code`` (a server-side end, not a client cancel)."""
        self.finished = True
        context.abort(code, details)


class FakeRiva(riva_asr_pb2_grpc.RivaSpeechRecognitionServicer, riva_tts_pb2_grpc.RivaSpeechSynthesisServicer,
               health_pb2_grpc.HealthServicer):
    def __init__(self, vocabulary=("alpha", "bravo", "charlie", "delta", "echo", "foxtrot"), *,
                 rms_threshold: float = 300.0, interim_every_s: float = 0.1, final_gap_s: float | None = None,
                 languages=("en-US",), tts_tone_hz: float = 220.0, tts_s_per_char: float = 0.05,
                 tts_chunks: int = 5, tts_chunk_delay_s: float = 0.0, voices=("English-US.Female-1",)):
        self.vocabulary = tuple(vocabulary)
        self.rms_threshold = rms_threshold
        self.interim_every_s = interim_every_s
        self.final_gap_s = final_gap_s
        self.languages = tuple(languages)
        self.tts_tone_hz = tts_tone_hz
        self.tts_s_per_char = tts_s_per_char
        self.tts_chunks = tts_chunks
        self.tts_chunk_delay_s = tts_chunk_delay_s
        self.voices = tuple(voices)
        # faults
        self.delay_s = 0.0
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.abort_after_audio = 0
        self.health = health_pb2.HealthCheckResponse.SERVING
        self.asr_models = 1
        self.tts_models = 1
        # records
        self.asr_configs: list = []
        self.streaming_configs: list = []
        self.tts_requests: list = []
        self.cancelled: list[str] = []
        self.cancel_event = threading.Event()
        self.active = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        riva_asr_pb2_grpc.add_RivaSpeechRecognitionServicer_to_server(self, server)
        riva_tts_pb2_grpc.add_RivaSpeechSynthesisServicer_to_server(self, server)
        health_pb2_grpc.add_HealthServicer_to_server(self, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def __enter__(self) -> "FakeRiva":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """True once no call is running (handlers have seen their cancel or finished)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.active == 0:
                return True
            time.sleep(0.01)
        return self.active == 0

    # -- helpers --------------------------------------------------------------------------------
    def _check_asr_config(self, config, call: _Call, context) -> None:
        with self._lock:
            self.asr_configs.append(_copy(config))
        if config.encoding != LINEAR_PCM:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                       f"fake supports LINEAR_PCM only, got {config.encoding}")
        if config.sample_rate_hertz <= 0:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "sample_rate_hertz missing")
        if config.language_code not in self.languages:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "Error: Unavailable model requested given these "
                       f"parameters: language_code={config.language_code}")

    def _words(self, segs, first_index: int, with_times: bool) -> list:
        words = []
        for i, (start, end) in enumerate(segs):
            w = riva_asr_pb2.WordInfo(word=self.vocabulary[(first_index + i) % len(self.vocabulary)],
                                      confidence=0.9)
            if with_times:
                w.start_time, w.end_time = int(round(start * 1000)), int(round(end * 1000))
            words.append(w)
        return words

    def _alternative(self, words) -> riva_asr_pb2.SpeechRecognitionAlternative:
        return riva_asr_pb2.SpeechRecognitionAlternative(transcript=" ".join(w.word for w in words),
                                                         confidence=0.9 if words else 0.0, words=words)

    # -- ASR ------------------------------------------------------------------------------------
    def StreamingRecognize(self, request_iterator, context):
        call = _Call(self, "StreamingRecognize", context)
        try:
            first = next(request_iterator)
        except (StopIteration, grpc.RpcError):
            return
        if not first.HasField("streaming_config"):
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "first request must carry streaming_config")
        with self._lock:
            self.streaming_configs.append(_copy(first.streaming_config))
        config = first.streaming_config.config
        self._check_asr_config(config, call, context)
        rate, interim = config.sample_rate_hertz, first.streaming_config.interim_results
        times = config.enable_word_time_offsets
        if self.abort and self.abort_after_audio == 0:
            call.abort(context, *self.abort)
        audio = bytearray()
        finalized = 0  # segments already sent in a final result
        next_interim = self.interim_every_s
        n_audio = 0
        try:
            for request in request_iterator:
                audio += request.audio_content
                n_audio += 1
                if self.abort and n_audio >= self.abort_after_audio:
                    call.abort(context, *self.abort)
                pcm = np.frombuffer(bytes(audio[: len(audio) // 2 * 2]), dtype="<i2")
                now = len(pcm) / rate
                segs = segments(pcm, rate, self.rms_threshold)
                closed = [s for s in segs if s[1] < now - 1e-9]
                if self.final_gap_s is not None and segs[finalized:] and len(closed) == len(segs) \
                        and now - segs[-1][1] >= self.final_gap_s:  # an endpoint: silence since the last word
                    ready = segs[finalized:]
                    if ready:
                        words = self._words(ready, finalized, times)
                        yield riva_asr_pb2.StreamingRecognizeResponse(results=[riva_asr_pb2.StreamingRecognitionResult(
                            alternatives=[self._alternative(words)], is_final=True, audio_processed=now)])
                        finalized += len(ready)
                if interim and now >= next_interim:
                    next_interim = now + self.interim_every_s
                    pending = segs[finalized:]
                    if pending:
                        stable = len(closed) == len(segs)
                        words = self._words(pending, finalized, times)
                        yield riva_asr_pb2.StreamingRecognizeResponse(results=[riva_asr_pb2.StreamingRecognitionResult(
                            alternatives=[self._alternative(words)], is_final=False,
                            stability=0.9 if stable else 0.1, audio_processed=now)])
        except grpc.RpcError:  # the client cancelled while we read
            return
        if not call.sleep(self.delay_s):
            return
        pcm = np.frombuffer(bytes(audio[: len(audio) // 2 * 2]), dtype="<i2")
        segs = segments(pcm, rate, self.rms_threshold)[finalized:]
        if segs:
            words = self._words(segs, finalized, times)
            yield riva_asr_pb2.StreamingRecognizeResponse(results=[riva_asr_pb2.StreamingRecognitionResult(
                alternatives=[self._alternative(words)], is_final=True, audio_processed=len(pcm) / rate)])
        call.done()

    def Recognize(self, request, context):
        call = _Call(self, "Recognize", context)
        self._check_asr_config(request.config, call, context)
        if self.abort:
            call.abort(context, *self.abort)
        if not call.sleep(self.delay_s):
            return riva_asr_pb2.RecognizeResponse()
        rate = request.config.sample_rate_hertz
        pcm = np.frombuffer(request.audio[: len(request.audio) // 2 * 2], dtype="<i2")
        segs = segments(pcm, rate, self.rms_threshold)
        words = self._words(segs, 0, request.config.enable_word_time_offsets)
        call.done()
        results = [riva_asr_pb2.SpeechRecognitionResult(alternatives=[self._alternative(words)],
                                                        audio_processed=len(pcm) / rate)] if segs else []
        return riva_asr_pb2.RecognizeResponse(results=results)

    def GetRivaSpeechRecognitionConfig(self, request, context):
        cfg = riva_asr_pb2.RivaSpeechRecognitionConfigResponse
        return cfg(model_config=[cfg.Config(model_name=f"fake-asr-{i}",
                                            parameters={"language_code": self.languages[0], "type": "online"})
                                 for i in range(self.asr_models)])

    # -- TTS ------------------------------------------------------------------------------------
    def _tone(self, request, call: _Call, context) -> np.ndarray:
        with self._lock:
            self.tts_requests.append(_copy(request))
        if request.encoding != LINEAR_PCM:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "fake synthesises LINEAR_PCM only")
        if request.sample_rate_hz <= 0:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, "sample_rate_hz missing")
        if request.voice_name and request.voice_name not in self.voices:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"voice {request.voice_name} not found")
        if request.language_code not in self.languages:
            call.abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"language {request.language_code} not supported")
        rate = request.sample_rate_hz
        n = int(round(len(request.text) * self.tts_s_per_char * rate))
        t = np.arange(n) / rate
        return (0.3 * 32767 * np.sin(2 * np.pi * self.tts_tone_hz * t)).astype("<i2")

    def SynthesizeOnline(self, request_iterator, context):
        call = _Call(self, "SynthesizeOnline", context)
        for request in request_iterator:
            pcm = self._tone(request, call, context)
            if self.abort:
                call.abort(context, *self.abort)
            if not call.sleep(self.delay_s):
                return
            for k, piece in enumerate(np.array_split(pcm, max(1, self.tts_chunks))):
                if k and not call.sleep(self.tts_chunk_delay_s):
                    return
                yield riva_tts_pb2.SynthesizeSpeechResponse(audio=piece.tobytes())
        call.done()

    def Synthesize(self, request, context):
        call = _Call(self, "Synthesize", context)
        pcm = self._tone(request, call, context)
        if self.abort:
            call.abort(context, *self.abort)
        if not call.sleep(self.delay_s):
            return riva_tts_pb2.SynthesizeSpeechResponse()
        call.done()
        return riva_tts_pb2.SynthesizeSpeechResponse(audio=pcm.tobytes())

    def GetRivaSynthesisConfig(self, request, context):
        cfg = riva_tts_pb2.RivaSynthesisConfigResponse
        return cfg(model_config=[cfg.Config(model_name=f"fake-tts-{i}",
                                            parameters={"voice_name": self.voices[0] if self.voices else "",
                                                        "language_code": self.languages[0]})
                                 for i in range(self.tts_models)])

    # -- health ---------------------------------------------------------------------------------
    def Check(self, request, context):
        return health_pb2.HealthCheckResponse(status=self.health)


def _copy(message):
    out = type(message)()
    out.CopyFrom(message)
    return out


def dead_address() -> str:
    """127.0.0.1 and a port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"
