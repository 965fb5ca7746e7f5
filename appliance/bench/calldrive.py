"""The whole appliance as real processes (sipd, asrd, ttsd, agentd on the CPU defaults, the
example receptionist and its booking server), called by real softphones (baresip) playing
caller turns from a WAV and recording what they hear. Shared by the end-to-end tests and
`appliancectl bench latency`."""

from __future__ import annotations

import random
import resource
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from appliance.agent.examples.clinic import install_example_agent
from appliance.bench.sipdrive import EventLog, Service, free_port
from appliance.speech import wavfile

SERVICES = ("sipd", "asrd", "ttsd", "agentd")


class Appliance:
    def __init__(self, sandbox, booking_url: str):
        self.sandbox = sandbox
        self.port = free_port()
        cfg = sandbox["config"]
        rtp = 26000 + random.randrange(0, 2000) * 2  # parallel appliances (bench, tests) rarely collide
        self.rtp_ports = range(rtp, rtp + 200)
        cfg.write_text(cfg.read_text() + f'\n[sip]\nbind = "127.0.0.1"\nport = {self.port}\n'
                       f'rtp_port_min = {rtp}\nrtp_port_max = {rtp + 199}\n'
                       # a bench measures what the box holds: admission must not decide for it
                       'max_calls = 100\nturn_p95_target_ms = 0.0\n')
        install_example_agent(Path(sandbox["root"]) / "agents", booking_url)
        self.services: dict[str, Service] = {}
        self.events: EventLog | None = None
        try:
            for n in SERVICES:
                self.services[n] = Service(sandbox, n).start(wait_ready=False)
            deadline = time.monotonic() + 90
            for name, svc in self.services.items():
                while True:
                    try:
                        if svc.status().state == "ready":
                            break
                    except Exception:
                        pass
                    if svc.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{name} did not start:\n{svc.output()}")
                    time.sleep(0.2)
            self.events = EventLog(str(sandbox["run_dir"]), services=SERVICES)
        except BaseException:  # a service that fails (or a signal) stops the ones already started
            self.stop()
            raise

    def stop(self) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None
        for svc in self.services.values():
            svc.stop()


def write_ulaw_wav(path: Path, pcm: np.ndarray) -> None:
    """8 kHz G.711 mu-law WAV (format 7): what SIPp's rtp_stream sends as PCMU, byte for byte."""
    import struct

    from ..telephony.media.g711 import ulaw_encode

    data = ulaw_encode(pcm.astype(np.int16))
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
                     + struct.pack("<IHHIIHH", 16, 7, 1, 8000, 8000, 1, 8) + b"data" + struct.pack("<I", len(data)) + data)


def caller_voice(text: str) -> np.ndarray:
    """The caller at 8 kHz: Piper speech made higher and quicker (read at 1.12x its rate), so
    the caller does not sound like the agent's own voice."""
    import soxr

    from appliance.bench.speechdrive import synthetic_speech

    pcm = synthetic_speech(text).astype(np.float32) / 32768
    return (np.clip(soxr.resample(pcm, 16000 * 1.12, 8000), -1, 1) * 32767).astype(np.int16)


def caller_wav(workdir: Path, script: list[tuple[float, str]], seconds: float) -> tuple[Path, list[float], float]:
    """The caller's side as an 8 kHz WAV: each turn after ``gap`` s of silence, then ``seconds``
    more; returns the path, when each turn's speech ends (s from the start) and the length."""
    parts, ends, t = [], [], 0.0
    for gap, text in script:
        voice = caller_voice(text)
        loud = np.flatnonzero(np.abs(voice) > 300)
        parts += [np.zeros(int(8000 * gap), np.int16), voice]
        t += gap
        ends.append(t + (loud[-1] + 1) / 8000 if len(loud) else t)
        t += len(voice) / 8000
    parts.append(np.zeros(int(8000 * seconds), np.int16))
    audio = np.concatenate(parts)
    workdir.mkdir(parents=True, exist_ok=True)
    wavfile.write(workdir / "caller.wav", audio, 8000)
    return workdir / "caller.wav", ends, len(audio) / 8000


def baresip_config(workdir: Path, codec: str = "g711", caller: str = "+15557654321") -> None:
    """A baresip profile in ``workdir``: ``caller.wav`` is its microphone (aufile does not
    resample: 8 kHz for G.711, 16 kHz for G.722), and sndfile records what it hears."""
    (workdir / "config").write_text(f"""poll_method epoll
sip_listen 127.0.0.1:{free_port()}
net_interface 127.0.0.1
audio_player aufile,{workdir}/unused.wav
audio_source aufile,{workdir}/caller.wav
module_path /usr/lib/baresip/modules
module {codec}.so
module aufile.so
module sndfile.so
module account.so
module_app menu.so
snd_path {workdir}
""")
    (workdir / "accounts").write_text(f"<sip:{caller}@127.0.0.1>;regint=0\n")


def no_core_dumps() -> None:
    """preexec_fn for the peers the harness spawns: a crashing softphone leaves no core file
    in whatever directory it was started from (one was once committed by accident)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def start_baresip(workdir: Path, port: int, seconds: float, caller: str = "+15557654321") -> subprocess.Popen:
    """baresip dialling the appliance with ``workdir/caller.wav`` as its microphone and a
    recording of what it hears in ``workdir/dump-*-dec.wav``; it hangs up after ``seconds``."""
    if shutil.which("baresip") is None:
        raise RuntimeError("baresip is not installed (Debian package baresip; scripts/test installs it)")
    baresip_config(workdir, caller=caller)
    return subprocess.Popen(["baresip", "-f", str(workdir), "-e", f"/dial sip:agent@127.0.0.1:{port}",
                             "-t", str(int(seconds + 1))], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir, preexec_fn=no_core_dumps)


def baresip_call(workdir: Path, port: int, script: list[tuple[float, str]], *, seconds: float) -> Path:
    """One call: play the script, stay ``seconds`` more, hang up; the recording of what the
    caller heard."""
    _, _, length = caller_wav(workdir, script, seconds)
    phone = start_baresip(workdir, port, length)
    phone.wait(length + 30)
    (dump,) = workdir.glob("dump-*-dec.wav")
    return dump
