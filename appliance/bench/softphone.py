"""A real softphone (baresip) that speaks when spoken to.

baresip is driven over its ``ctrl_tcp`` socket (netstring-framed JSON commands): it dials the
appliance, and each caller turn switches its microphone (``ausrc``) to a WAV holding that
turn's speech followed by a minute of silence, so RTP never stops between turns and a turn
starts exactly when the caller decides, after hearing the agent, like a person. What it
hears is recorded by baresip's ``sndfile`` filter (``dump-*-dec.wav``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

from ..speech import wavfile
from .calldrive import baresip_config, caller_voice, no_core_dumps
from .sipdrive import free_port

PAD_S = 60.0  # silence after each turn, longer than any agent answer


class Softphone:
    def __init__(self, workdir: Path, max_seconds: float = 300.0):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ctrl_port = free_port()
        wavfile.write(workdir / "caller.wav", np.zeros(int(8000 * PAD_S), np.int16), 8000)
        baresip_config(workdir)
        with open(workdir / "config", "a") as f:
            f.write(f"module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{self.ctrl_port}\n")
        with open(workdir / "baresip.log", "wb") as log:
            self.proc = subprocess.Popen(["baresip", "-f", str(workdir), "-t", str(int(max_seconds))],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=workdir, preexec_fn=no_core_dumps)
        self.sock = self._connect()
        self._buf = b""
        self.turns = 0
        self.said: list[str] = []

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + 10
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("baresip did not open its control socket") from None
                time.sleep(0.1)

    def command(self, command: str, params: str = "") -> dict:
        """Send one command and return baresip's response (events seen meanwhile are dropped)."""
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        while True:
            msg = self._read()
            if msg.get("response"):
                return msg

    def _read(self) -> dict:
        while True:
            head, sep, rest = self._buf.partition(b":")
            if sep and len(rest) > int(head):
                n = int(head)
                self._buf = rest[n + 1:]
                return json.loads(rest[:n])
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("baresip closed its control socket")
            self._buf += chunk

    def dial(self, uri: str) -> None:
        answer = self.command("dial", uri)
        if not answer.get("ok"):
            raise RuntimeError(f"baresip could not dial {uri}: {answer.get('data')}")

    def say(self, text: str) -> None:
        """Speak ``text`` now (Piper, pitched up so it is not the agent's voice), then silence."""
        self.turns += 1
        self.said.append(text)
        voice = caller_voice(text)
        path = self.workdir / f"turn-{self.turns}.wav"
        wavfile.write(path, np.concatenate([voice, np.zeros(int(8000 * PAD_S), np.int16)]), 8000)
        self.command("ausrc", f"aufile,{path}")

    def close(self) -> None:
        try:
            self.command("hangup")
            self.command("quit")
        except (OSError, RuntimeError, ValueError):
            pass
        self.sock.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def converse(phone: Softphone, events, reply, *, max_turns: int = 12, timeout: float = 180.0,
             on_tick=None) -> None:
    """Answer each thing the agent finishes saying with ``reply(agent_text)``: a sentence to
    say (after a human-like 0.6 s), ``""`` to keep listening, ``None`` to hang up. Returns when
    the call ends (either side), after ``max_turns`` or ``timeout``."""
    from ..bus.messages import CallEnded, TtsFinished

    seen, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline and phone.turns <= max_turns:
        events.collect(timeout=0.1)
        if on_tick is not None:
            on_tick()
        new, seen = events.events[seen:], len(events.events)
        for e in new:
            if isinstance(e, CallEnded):
                return
            if isinstance(e, TtsFinished) and not e.cancelled and e.spoken:
                answer = reply(e.spoken)
                if answer is None:
                    phone.command("hangup")
                    return
                if answer:
                    time.sleep(0.6)
                    phone.say(answer)
