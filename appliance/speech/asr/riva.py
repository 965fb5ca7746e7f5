"""NVIDIA Riva ASR over gRPC (a Riva server on the GPU box, reached over the LAN).

Everything goes through nvidia-riva-client's public API: ``riva.client.Auth`` for the
channel, ``riva.client.ASRService`` for the stub, ``RecognitionConfig`` /
``StreamingRecognitionConfig`` and the ``add_*_to_config`` helpers for the request, and
``riva.client.asr.streaming_request_generator`` for the bidi request stream. The call is
made on ``ASRService.stub`` directly (not ``streaming_response_generator``) because we need
the call object to cancel it and a deadline, which the convenience wrapper does not expose.

Audio is the ring format, LINEAR_PCM 16 kHz mono int16. Riva's ``WordInfo.start_time`` /
``end_time`` are milliseconds from the start of the stream's audio; we give seconds.

Streams: ``open_stream`` starts the gRPC bidi call at once (it does not block: asrd calls it
from its event loop); ``feed`` queues audio for the request iterator; a reader thread turns
interim results into ``on_partial(text, stable)`` calls and keeps the final ones; ``finish``
closes the request side and waits at most ``timeout`` for the server to end the call (then
cancels it and raises BackendError). Text of a stream = the top alternative of every
``is_final`` result, in order (Riva's own endpointing may cut one utterance into several).

Start-up: the constructor does not touch the network (the channel connects lazily);
``check()`` probes the server (channel ready, gRPC health, an ASR model deployed) and raises
ModelError so a service exits non-zero at start instead of failing every utterance.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from typing import Any, Iterator, Sequence

import grpc
import numpy as np

from ...audio import SAMPLE_RATE
from ...config.backends import AsrBackendName
from ..errors import BackendError, ModelError
from .base import AsrBackend, AsrStream, Hint, PartialCallback, Transcript, Word

log = logging.getLogger("appliance.asr")

STABLE_AT = 0.9  # an interim result with stability at or above this is reported as stable
_EPS = 1e-6  # stability and confidences are proto floats (float32): 0.9 arrives as 0.89999998
MAX_REQUEST_SAMPLES = SAMPLE_RATE // 5  # 200 ms of audio at most per StreamingRecognizeRequest
STREAM_LIMIT_S = 300.0  # gRPC deadline of one stream: a caller that never finishes one frees the server slot
_ids = itertools.count(1)


def _riva():
    try:
        import riva.client
        import riva.client.asr  # noqa: F401 (streaming_request_generator)
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModelError(f"nvidia-riva-client is not installed ({exc}): pip install nvidia-riva-client") from None
    return riva.client


def rpc_error(service: str, server: str, exc: BaseException) -> BackendError:
    """A BackendError naming the server and the gRPC status, for any failure of one call."""
    code = exc.code() if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)) else None
    details = exc.details() if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "details", None)) else None
    if code is None:
        return BackendError(f"Riva {service} at {server} failed: {exc!r}")
    hint = {
        grpc.StatusCode.UNAVAILABLE: " (server down or not reachable)",
        grpc.StatusCode.DEADLINE_EXCEEDED: " (timed out)",
        grpc.StatusCode.INVALID_ARGUMENT: " (request refused: model, language or audio format)",
    }.get(code, "")
    return BackendError(f"Riva {service} at {server} failed: {code.name}{hint}: {details or 'no details'}")


def probe(auth: Any, server: str, timeout: float, service: str) -> None:
    """ModelError unless ``server`` answers within ``timeout`` and its gRPC health service says
    SERVING (a server without one, UNIMPLEMENTED, counts as up: it answered).

    The probe is one health Check with ``wait_for_ready``: it waits for the connection up to
    the deadline, like ``grpc.channel_ready_future``, but without that future's connectivity
    polling thread, which outlives it and dies noisily when the channel is closed."""
    from riva.client.proto import health_pb2, health_pb2_grpc

    try:
        reply = health_pb2_grpc.HealthStub(auth.channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True,
            metadata=auth.get_auth_metadata())
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            raise ModelError(f"Riva server at {server} not reachable: no answer within {timeout:.1f} s "
                             f"({code.name}; is the Riva server running on the GPU box, and "
                             f"{service}.riva_server right?)") from None
        raise ModelError(f"Riva server at {server} not reachable: health check failed: "
                         f"{code.name}: {exc.details()}") from None
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise ModelError(f"Riva server at {server} is up but not serving ({name}): still loading models?")


def _clamp01(value: float) -> float:
    return round(min(max(float(value), 0.0), 1.0), 4)  # a float32 on the wire: 4 digits are all it has


class RivaAsr(AsrBackend):
    name = AsrBackendName.RIVA
    streaming = True

    def __init__(self, server: str, language: str = "en-US", boost_words: Sequence[str] = (),
                 boost_score: float = 20.0, timeout_s: float = 10.0, *, offline: bool = False,
                 endpointing: dict[str, float] | None = None):
        """``offline``: ``transcribe`` uses the unary Recognize call instead of a stream (a Riva
        deployment with only a streaming model refuses Recognize, hence off by default).
        ``endpointing``: keyword arguments of ``riva.client.add_endpoint_parameters_to_config``
        (start_history, start_threshold, stop_history, stop_history_eou, stop_threshold,
        stop_threshold_eou); None leaves the model's defaults (asrd cuts utterances itself)."""
        rc = _riva()
        self.server = server
        self.language = language
        self.boost_words = [w for w in boost_words if w]
        self.boost_score = float(boost_score)
        self.timeout_s = float(timeout_s)
        self.offline = offline
        self.endpointing = dict(endpointing or {})
        self._auth = rc.Auth(uri=server, use_ssl=False)
        self._service = rc.ASRService(self._auth)

    @classmethod
    def from_config(cls, asr_cfg) -> "RivaAsr":
        return cls(asr_cfg.riva_server, language=asr_cfg.riva_language, boost_words=tuple(asr_cfg.boost_words),
                   boost_score=asr_cfg.boost_score, timeout_s=asr_cfg.timeout_s)

    # -- requests -------------------------------------------------------------------------------
    def recognition_config(self):
        rc = _riva()
        config = rc.RecognitionConfig(
            encoding=rc.AudioEncoding.LINEAR_PCM,
            sample_rate_hertz=SAMPLE_RATE,
            audio_channel_count=1,
            language_code=self.language,
            max_alternatives=1,
            enable_word_time_offsets=True,
            enable_automatic_punctuation=True,
        )
        if self.boost_words:
            rc.add_word_boosting_to_config(config, self.boost_words, self.boost_score)
        if self.endpointing:
            args = {k: 0 for k in ("start_history", "start_threshold", "stop_history", "stop_history_eou",
                                   "stop_threshold", "stop_threshold_eou")}
            unknown = set(self.endpointing) - set(args)
            if unknown:
                raise ValueError(f"unknown endpointing parameters {sorted(unknown)}")
            args.update(self.endpointing)
            rc.add_endpoint_parameters_to_config(config, **args)
        return config

    def streaming_config(self):
        return _riva().StreamingRecognitionConfig(config=self.recognition_config(), interim_results=True)

    # -- start-up probe -------------------------------------------------------------------------
    def check(self, timeout: float | None = None) -> None:
        """ModelError unless the server answers within ``timeout`` (default min(timeout_s, 5))
        and has an ASR model. A language the listed models do not name is only logged: model
        parameters differ between Riva releases, and the first real request says for sure."""
        timeout = min(self.timeout_s, 5.0) if timeout is None else timeout
        probe(self._auth, self.server, timeout, "asr")
        from riva.client.proto import riva_asr_pb2

        try:
            reply = self._service.stub.GetRivaSpeechRecognitionConfig(
                riva_asr_pb2.RivaSpeechRecognitionConfigRequest(), timeout=timeout,
                metadata=self._auth.get_auth_metadata())
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            raise ModelError(f"Riva server at {self.server} does not list its ASR models: "
                             f"{exc.code().name}: {exc.details()}") from None
        if not reply.model_config:
            raise ModelError(f"Riva server at {self.server} has no ASR model deployed "
                             f"(enable ASR in the Riva server's config.sh and redeploy)")
        languages = {c.parameters.get("language_code", "") for c in reply.model_config} - {""}
        if languages and not any(self.language in lang.split(",") for lang in languages):
            log.warning("Riva server at %s lists ASR languages %s, not %s", self.server, sorted(languages),
                        self.language)

    # -- recognition ----------------------------------------------------------------------------
    def transcribe(self, audio: np.ndarray, timeout: float, hint: Hint | None = None) -> Transcript:
        """(The hint is not used: Riva's boost words are the site's vocabulary, set in config.)"""
        if audio.dtype != np.int16:
            raise ValueError("audio must be int16 at 16 kHz")
        timeout = timeout or self.timeout_s
        if len(audio) == 0:
            return Transcript("", meta={"reason": "no audio"})
        if self.offline:
            return self._recognize(audio, timeout)
        stream = _RivaStream(self, None, deadline_s=timeout)
        stream.feed(audio)
        return stream.finish(timeout)

    def _recognize(self, audio: np.ndarray, timeout: float) -> Transcript:
        future = self._service.offline_recognize(audio.astype("<i2", copy=False).tobytes(),
                                                 self.recognition_config(), future=True)
        try:
            reply = future.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            future.cancel()
            raise BackendError(f"Riva recognition at {self.server} failed: no answer within {timeout:.1f} s") from None
        except grpc.RpcError as exc:
            raise rpc_error("recognition", self.server, exc) from None
        finals = [r.alternatives[0] for r in reply.results if r.alternatives]
        processed = max((r.audio_processed for r in reply.results), default=0.0)
        return self._transcript(finals, processed)

    def open_stream(self, on_partial: PartialCallback) -> AsrStream:
        return _RivaStream(self, on_partial, deadline_s=STREAM_LIMIT_S)

    def _transcript(self, finals: list, audio_processed: float = 0.0) -> Transcript:
        texts, words, alt_confs = [], [], []
        for alt in finals:
            text = alt.transcript.strip()
            if text:
                texts.append(text)
                alt_confs.append(_clamp01(alt.confidence))
            for w in alt.words:
                words.append(Word(w.word, w.start_time / 1000.0, w.end_time / 1000.0, _clamp01(w.confidence)))
        word_confs = [w.conf for w in words]
        if word_confs and any(word_confs):
            confidence = sum(word_confs) / len(word_confs)
        elif alt_confs:
            confidence = sum(alt_confs) / len(alt_confs)
        else:
            confidence = 0.0
        meta = {"backend": "riva", "server": self.server, "finals": len(finals)}
        if audio_processed:
            meta["audio_processed"] = float(audio_processed)
        return Transcript(" ".join(texts), tuple(words), confidence, meta)

    def close(self) -> None:
        self._auth.channel.close()


class _RivaStream(AsrStream):
    """One StreamingRecognize call. Threads: gRPC's own request consumer pulls ``_chunks``;
    ``_read`` (ours) handles the responses. ``feed`` never blocks."""

    def __init__(self, owner: RivaAsr, on_partial: PartialCallback | None, *, deadline_s: float):
        rc = _riva()
        self._owner = owner
        self._on_partial = on_partial
        self._audio: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False  # no more audio (finish or abort)
        self._aborted = False
        self._done = threading.Event()
        self._error: BackendError | None = None
        self._finals: list = []
        self._processed = 0.0
        self._last_partial: tuple[str, bool] | None = None
        self.id = next(_ids)
        requests = rc.asr.streaming_request_generator(self._chunks(), owner.streaming_config())
        self._call = owner._service.stub.StreamingRecognize(requests, timeout=deadline_s,
                                                            metadata=owner._auth.get_auth_metadata())
        self._thread = threading.Thread(target=self._read, name=f"riva-asr-{self.id}", daemon=True)
        self._thread.start()

    # -- audio in -------------------------------------------------------------------------------
    def feed(self, pcm: np.ndarray) -> None:
        if pcm.dtype != np.int16:
            raise ValueError("audio must be int16 at 16 kHz")
        with self._lock:
            if self._closed or self._done.is_set():
                return  # finished, aborted or failed: the error (if any) comes from finish()
            data = pcm.astype("<i2", copy=False).tobytes()
            step = MAX_REQUEST_SAMPLES * 2
            for i in range(0, len(data), step):
                self._audio.put(data[i:i + step])

    def _end_audio(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._audio.put(None)

    def _chunks(self) -> Iterator[bytes]:
        """Audio for the request stream; what queued up while the server was busy goes out
        joined, up to MAX_REQUEST_SAMPLES a request."""
        limit = MAX_REQUEST_SAMPLES * 2
        while True:
            item = self._audio.get()
            if item is None:
                return
            parts, size = [item], len(item)
            end = False
            while size < limit:
                try:
                    nxt = self._audio.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    end = True
                    break
                parts.append(nxt)
                size += len(nxt)
            yield b"".join(parts)
            if end:
                return

    # -- results out ----------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            for response in self._call:
                self._handle(response)
        except grpc.RpcError as exc:
            if not self._aborted:
                self._error = rpc_error("recognition", self._owner.server, exc)
        except Exception as exc:  # a malformed response: fail this stream, not the service
            log.exception("Riva stream %d: unexpected failure", self.id)
            self._error = BackendError(f"Riva recognition at {self._owner.server} failed: {exc!r}")
        finally:
            self._end_audio()  # frees gRPC's request consumer when the call ended first
            self._done.set()

    def _handle(self, response) -> None:
        interim, stabilities = [], []
        for result in response.results:
            if result.audio_processed:
                self._processed = max(self._processed, result.audio_processed)
            if not result.alternatives:
                continue
            alt = result.alternatives[0]
            if result.is_final:
                self._finals.append(alt)
            else:
                interim.append(alt.transcript.strip())
                stabilities.append(result.stability)
        if not stabilities or self._on_partial is None or self._aborted:
            return
        done = [a.transcript.strip() for a in self._finals]
        text = " ".join(t for t in done + interim if t)
        stable = min(stabilities) >= STABLE_AT - _EPS
        if (text, stable) == self._last_partial or not text:
            return
        self._last_partial = (text, stable)
        try:
            self._on_partial(text, stable)
        except Exception:  # the caller's bug must not kill the stream
            log.exception("partial callback failed")

    # -- end ------------------------------------------------------------------------------------
    def finish(self, timeout: float) -> Transcript:
        self._end_audio()
        if not self._done.wait(timeout):
            self._aborted = True
            self._call.cancel()
            raise BackendError(f"Riva recognition at {self._owner.server} failed: "
                               f"no final transcript within {timeout:.1f} s")
        if self._error is not None:
            raise self._error
        if self._aborted:
            raise BackendError("stream was aborted")
        return self._owner._transcript(self._finals, self._processed)

    def abort(self) -> None:
        self._aborted = True
        self._end_audio()
        self._call.cancel()
