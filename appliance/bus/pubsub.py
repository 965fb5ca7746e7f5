"""Events: each service publishes on its own PUB socket; listeners subscribe to any set.

Publishing never blocks: a slow or absent subscriber loses events past the high-water mark
rather than stalling sipd's audio loop. Subscribers drop (and count) anything malformed.
"""

from __future__ import annotations

import logging
from typing import Iterable

import zmq
import zmq.asyncio

from .codec import MalformedMessage, decode, encode
from .endpoints import restrict
from .messages import Message

log = logging.getLogger("appliance.bus")
HWM = 10_000


class Publisher:
    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str):
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, HWM)
        self.sock.bind(endpoint)
        restrict(endpoint)
        self.sent = 0
        self.dropped = 0

    def publish(self, msg: Message) -> None:
        try:
            self.sock.send_multipart(encode(msg), flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1

    def close(self) -> None:
        self.sock.close()


class Subscriber:
    """Receives events from the given publisher endpoints, filtered by message type prefix."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoints: Iterable[str], types: Iterable[str] = ("",)):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, HWM)
        for t in types:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        for ep in endpoints:
            self.sock.connect(ep)  # connecting before the peer binds is fine: ZeroMQ retries
        self.dropped = 0

    async def recv(self) -> Message:
        """The next well-formed message; malformed ones are logged, counted and skipped."""
        while True:
            frames = await self.sock.recv_multipart()
            try:
                return decode(frames)
            except MalformedMessage as exc:
                self.dropped += 1
                log.warning("dropped malformed event: %s", exc)

    def __aiter__(self):
        return self

    async def __anext__(self) -> Message:
        return await self.recv()

    def close(self) -> None:
        self.sock.close()
