"""The local end of `appliancectl talk`: a microphone and an earpiece in the rings' format.

Both lines speak 16 kHz mono int16 in 20 ms frames (320 samples), the format every other part
of the appliance uses, so the call code never cares which one it holds. A line is clocked by
its user: ``read`` and ``write`` never block and are called once per 20 ms tick; the sound
card keeps its own clock, so its line absorbs the small drift with short bounded queues
(silence on underrun, oldest audio dropped on overrun) rather than letting latency grow.
"""

from __future__ import annotations

import collections
import wave
from pathlib import Path
from typing import Protocol

import numpy as np

from ..audio import FRAME_SAMPLES, SAMPLE_RATE
from ..audio.resample import Resampler
from ..speech import wavfile

SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


class LineError(RuntimeError):
    """The line cannot be opened; the message is one line meant for the person at the box."""


class Line(Protocol):
    def read(self) -> np.ndarray:
        """The next 20 ms the caller says (320 int16 samples at 16 kHz); silence when none."""

    def write(self, frame: np.ndarray) -> None:
        """20 ms the caller hears (320 int16 samples at 16 kHz)."""

    def close(self) -> None: ...


# -- files ----------------------------------------------------------------------------------

def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV of any rate and channel count as 16 kHz mono int16."""
    try:
        return wavfile.read_16k(path)
    except wavfile.WavError as exc:
        raise LineError(str(exc)) from None


class WavLine:
    """A WAV file is the microphone (any rate, resampled; then silence for as long as the call
    lasts) and what the line hears is recorded, frame for frame, to a 16 kHz WAV: the two files
    share one timeline, so "the answer came after the question" can be read off the recording."""

    def __init__(self, mic: str | Path, record: str | Path | None = None):
        self.mic_path = Path(mic)
        pcm = read_wav(self.mic_path)
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME_SAMPLES, np.int16)])
        self._frames = pcm.reshape(-1, FRAME_SAMPLES)
        self._next = 0
        self._out: wave.Wave_write | None = None
        if record is not None:
            try:
                self._out = wave.open(str(record), "wb")
            except OSError as exc:
                raise LineError(f"{record}: cannot write the recording ({exc.strerror or exc})") from None
            self._out.setnchannels(1)
            self._out.setsampwidth(2)
            self._out.setframerate(SAMPLE_RATE)

    @property
    def mic_seconds(self) -> float:
        return len(self._frames) * FRAME_SAMPLES / SAMPLE_RATE

    @property
    def mic_done(self) -> bool:
        return self._next >= len(self._frames)

    def read(self) -> np.ndarray:
        if self._next >= len(self._frames):
            return SILENCE
        self._next += 1
        return self._frames[self._next - 1]

    def write(self, frame: np.ndarray) -> None:
        if self._out is not None:
            self._out.writeframes(np.ascontiguousarray(frame, dtype="<i2").tobytes())

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


# -- the sound card -------------------------------------------------------------------------

def import_sounddevice():
    """The sounddevice module, or a LineError saying what to install (it loads PortAudio)."""
    try:
        import sounddevice
    except ImportError:
        raise LineError("the sounddevice package is not installed (pip install sounddevice; "
                        "it is in the appliance's [cpu] extra)") from None
    except OSError:
        raise LineError("the PortAudio library is not installed (Debian: apt install libportaudio2)") from None
    return sounddevice


def parse_device(spec: str | None) -> tuple[int | str | None, int | str | None]:
    """``--device``: an index or a name fragment for both directions, or ``IN,OUT``."""
    if spec is None or spec == "":
        return None, None
    parts = [p.strip() for p in spec.split(",")] if "," in spec else [spec.strip(), spec.strip()]
    if len(parts) != 2 or not all(parts):
        raise LineError(f"--device {spec!r}: expected N, NAME or IN,OUT")
    return tuple(int(p) if p.isdigit() else p for p in parts)  # type: ignore[return-value]


def list_devices() -> str:
    sd = import_sounddevice()
    devices = sd.query_devices()
    if not len(devices):
        return "PortAudio sees no sound devices"
    return str(devices)


class SoundDeviceLine:
    """The box's sound card or a USB handset: streams at the device's native rate, resampled to
    and from 16 kHz with soxr's streaming resampler (the one sipd uses for the line side)."""

    def __init__(self, device: str | None = None, *, queue_frames: int = 8):
        sd = import_sounddevice()
        want_in, want_out = parse_device(device)
        in_info = _device(sd, want_in, "input")
        out_info = _device(sd, want_out, "output")
        self.input_name, self.output_name = in_info["name"], out_info["name"]
        self.in_rate, self.out_rate = int(in_info["default_samplerate"]), int(out_info["default_samplerate"])
        self._up = Resampler(self.in_rate, SAMPLE_RATE) if self.in_rate != SAMPLE_RATE else None
        self._down = Resampler(SAMPLE_RATE, self.out_rate) if self.out_rate != SAMPLE_RATE else None
        self._heard: collections.deque[np.ndarray] = collections.deque(maxlen=queue_frames)
        self._said: collections.deque[np.ndarray] = collections.deque(maxlen=queue_frames)
        self._in_pending = np.zeros(0, np.int16)
        self._out_pending = np.zeros(0, np.int16)
        self.underruns = 0
        self._streams = []
        try:
            self._streams.append(_open(sd, sd.InputStream, in_info, self.in_rate, self._on_input))
            self._streams.append(_open(sd, sd.OutputStream, out_info, self.out_rate, self._on_output))
            for s in self._streams:
                s.start()
        except (sd.PortAudioError, ValueError) as exc:
            self.close()
            raise LineError(f"cannot open the sound device: {exc}") from None

    # the PortAudio threads
    def _on_input(self, indata, frames, time_info, status) -> None:
        pcm = np.ascontiguousarray(indata[:, 0], dtype=np.int16)
        if self._up is not None:
            pcm = self._up.process(pcm)
        pcm = np.concatenate([self._in_pending, pcm])
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        for frame in pcm[:whole].reshape(-1, FRAME_SAMPLES):
            self._said.append(frame.copy())
        self._in_pending = pcm[whole:]

    def _on_output(self, outdata, frames, time_info, status) -> None:
        pcm = self._out_pending
        while len(pcm) < frames and self._heard:
            pcm = np.concatenate([pcm, self._heard.popleft()])
        if len(pcm) < frames:
            self.underruns += 1
            pcm = np.concatenate([pcm, np.zeros(frames - len(pcm), np.int16)])
        outdata[:] = pcm[:frames, None]
        self._out_pending = pcm[frames:]

    # the call's side
    def read(self) -> np.ndarray:
        try:
            return self._said.popleft()
        except IndexError:
            return SILENCE

    def write(self, frame: np.ndarray) -> None:
        pcm = np.ascontiguousarray(frame, dtype=np.int16)
        self._heard.append(self._down.process(pcm) if self._down is not None else pcm.copy())

    def close(self) -> None:
        for s in self._streams:
            try:
                s.stop()
                s.close()
            except Exception:  # closing a stream PortAudio already lost: nothing left to free
                pass
        self._streams = []


def _device(sd, want, kind: str) -> dict:
    try:
        info = sd.query_devices(want, kind)
    except (sd.PortAudioError, ValueError):
        if want is None:
            raise LineError(f"no sound {kind} device: PortAudio sees none "
                            "(appliancectl talk --list-devices; or use --in/--out files)") from None
        raise LineError(f"no sound {kind} device {want!r} (appliancectl talk --list-devices lists them)") from None
    if info[f"max_{kind}_channels"] < 1:
        raise LineError(f"sound device {want!r} ({info['name']}) has no {kind} channels "
                        "(appliancectl talk --list-devices)")
    return info


def _open(sd, cls, info: dict, rate: int, callback):
    """A mono int16 stream in 20 ms blocks on the device's own rate."""
    return cls(device=info.get("index", info["name"]), samplerate=rate, channels=1, dtype="int16", blocksize=rate // 50,
               latency="low", callback=callback)
