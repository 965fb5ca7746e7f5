"""Known text is never synthesised on the critical path.

An agent says the same lines call after call: its greeting, the flow's questions ("What day
would you like to come in?"), the fixed clauses of its confirmations ("Shall I book it?"),
its knowledge answers, its apologies. ttsd keeps each synthesised clause's 16 kHz audio here,
keyed by the voice (backend, model, speaking rate: ``TtsBackend.identity``) and the clause's
speech-normalised text, so the second time a clause is said it is ready at once. agentd sends
an agent's fixed clauses when it loads the agent (``tts.prepare``), and ttsd fills the cache
in the background, so even the first caller hears cached lines. A voice change is a new key:
nothing synthesised for the old voice is ever played with the new one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class ClauseCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self._lock = threading.Lock()  # filled from ttsd's synthesis threads

    def get(self, voice: str, text: str) -> np.ndarray | None:
        with self._lock:
            pcm = self.entries.get((voice, text))
            if pcm is None:
                self.misses += 1
                return None
            self.entries.move_to_end((voice, text))
            self.hits += 1
            return pcm

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self.entries

    def put(self, voice: str, text: str, pcm: np.ndarray) -> None:
        if pcm.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self.entries.pop((voice, text), None)
            self.bytes -= old.nbytes if old is not None else 0
            self.entries[(voice, text)] = pcm
            self.bytes += pcm.nbytes
            while self.bytes > self.max_bytes:  # least recently said first
                _, dropped = self.entries.popitem(last=False)
                self.bytes -= dropped.nbytes

    def status(self) -> dict:
        with self._lock:
            return {"cache_clauses": len(self.entries), "cache_mb": round(self.bytes / 1e6, 1),
                    "cache_hits": self.hits, "cache_misses": self.misses}
