"""RTP port pairs (even RTP port, RTCP on the next odd one), handed out round-robin so a
port freed by one call is not reused at once by the next (late packets of the old call)."""

from __future__ import annotations


class PortsExhausted(RuntimeError):
    pass


class PortPool:
    def __init__(self, low: int, high: int):
        first = low + (low % 2)
        self._free = list(range(first, high, 2))
        self._used: set[int] = set()

    def take(self) -> int:
        if not self._free:
            raise PortsExhausted("no free RTP port pair")
        port = self._free.pop(0)
        self._used.add(port)
        return port

    def give_back(self, port: int) -> None:
        if port in self._used:
            self._used.discard(port)
            self._free.append(port)

    @property
    def free(self) -> int:
        return len(self._free)
