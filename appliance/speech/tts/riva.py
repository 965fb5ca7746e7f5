"""NVIDIA Riva TTS over gRPC, streamed: ``SpeechSynthesisService.synthesize_online``.

The server is asked for LINEAR_PCM at ``sample_rate`` (16 kHz by default, the ring's rate, so
ttsd does not resample); each SynthesizeSpeechResponse's ``audio`` is raw little-endian int16.

A reader thread drains the call into a queue as fast as the server sends, so a consumer that
paces itself (ttsd writes only ``lead_ms`` ahead of playout) never stalls the server on gRPC
flow control; the generator waits for each chunk at most until ``timeout_s`` after the start.
Closing the generator early (a barge-in cancel) cancels the gRPC call, so the server stops
synthesising at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Iterator

import grpc
import numpy as np

from ...config.backends import TtsBackendName
from ..asr.riva import _riva, probe, rpc_error
from ..errors import BackendError, ModelError
from .base import TtsBackend

log = logging.getLogger("appliance.tts")

_END = object()


class RivaTts(TtsBackend):
    name = TtsBackendName.RIVA

    def __init__(self, server: str, voice: str = "", language: str = "en-US", sample_rate: int = 16_000,
                 timeout_s: float = 10.0):
        rc = _riva()
        self.server = server
        self.voice = voice
        self.language = language
        self.sample_rate = int(sample_rate)
        self.timeout_s = float(timeout_s)
        self._auth = rc.Auth(uri=server, use_ssl=False)
        self._service = rc.SpeechSynthesisService(self._auth)

    def identity(self) -> str:
        return f"{self.name}:{self.server}:{self.voice}:{self.language}:{self.sample_rate}"

    @classmethod
    def from_config(cls, tts_cfg) -> "RivaTts":
        return cls(tts_cfg.riva_server, voice=tts_cfg.riva_voice, language=tts_cfg.riva_language,
                   timeout_s=tts_cfg.timeout_s)

    def check(self, timeout: float | None = None) -> None:
        """ModelError unless the server answers within ``timeout`` (default min(timeout_s, 5))
        and has a TTS model. A voice the listed models do not name is only logged."""
        timeout = min(self.timeout_s, 5.0) if timeout is None else timeout
        probe(self._auth, self.server, timeout, "tts")
        from riva.client.proto import riva_tts_pb2

        try:
            reply = self._service.stub.GetRivaSynthesisConfig(riva_tts_pb2.RivaSynthesisConfigRequest(),
                                                              timeout=timeout, metadata=self._auth.get_auth_metadata())
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            raise ModelError(f"Riva server at {self.server} does not list its TTS models: "
                             f"{exc.code().name}: {exc.details()}") from None
        if not reply.model_config:
            raise ModelError(f"Riva server at {self.server} has no TTS model deployed "
                             f"(enable TTS in the Riva server's config.sh and redeploy)")
        voices = {c.parameters.get("voice_name", "") for c in reply.model_config} - {""}
        if self.voice and voices and self.voice not in voices:
            log.warning("Riva server at %s lists voices %s, not %s", self.server, sorted(voices), self.voice)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        if not text.strip():
            return
        rc = _riva()
        deadline = time.monotonic() + self.timeout_s
        call = self._service.synthesize_online(text, voice_name=self.voice or None, language_code=self.language,
                                               encoding=rc.AudioEncoding.LINEAR_PCM, sample_rate_hz=self.sample_rate)
        chunks: queue.SimpleQueue = queue.SimpleQueue()

        def read() -> None:
            try:
                for response in call:
                    chunks.put(response.audio)
                chunks.put(_END)
            except grpc.RpcError as exc:
                chunks.put(exc)
            except Exception as exc:  # pragma: no cover - a malformed response
                chunks.put(BackendError(f"Riva synthesis at {self.server} failed: {exc!r}"))

        threading.Thread(target=read, name="riva-tts", daemon=True).start()
        carry = b""
        try:
            while True:
                try:
                    item = chunks.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    raise BackendError(f"Riva synthesis at {self.server} failed: "
                                       f"not done within {self.timeout_s:.1f} s") from None
                if item is _END:
                    return
                if isinstance(item, grpc.RpcError):
                    raise rpc_error("synthesis", self.server, item) from None
                if isinstance(item, BaseException):
                    raise item
                data = carry + item
                usable = len(data) - len(data) % 2
                carry = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        finally:
            call.cancel()  # a no-op when the call already ended; stops the server otherwise

    def close(self) -> None:
        self._auth.channel.close()
