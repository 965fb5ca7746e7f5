"""Control: request/reply to one service, with a deadline on every request.

ROUTER (server) and DEALER (client) rather than REP/REQ, because REQ wedges forever after
one lost reply. Frames: client sends ``["", request_id, payload]``; the reply echoes the id,
so late replies to abandoned requests are recognised and discarded.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Awaitable, Callable

import zmq
import zmq.asyncio

from .codec import MalformedMessage, decode_payload, encode
from .endpoints import restrict
from .messages import Error, Message

log = logging.getLogger("appliance.bus")

Handler = Callable[[Message], Message | Awaitable[Message]]


class BusTimeout(TimeoutError):
    """No reply within the deadline: the service is down, stuck or overloaded."""


class RemoteError(RuntimeError):
    """The service answered with an Error reply."""


class ControlServer:
    """Answers control requests with the handler registered for the message class."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str):
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        restrict(endpoint)
        self.handlers: dict[type[Message], Handler] = {}
        self.dropped = 0
        self._tasks: set[asyncio.Task] = set()

    def on(self, cls: type[Message], handler: Handler) -> None:
        self.handlers[cls] = handler

    async def serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            if len(frames) != 4 or frames[1] != b"":
                self.dropped += 1
                log.warning("dropped control message with a bad envelope (%d frames)", len(frames))
                continue
            task = asyncio.create_task(self._answer(frames[0], frames[2], frames[3]))
            self._tasks.add(task)  # handlers run concurrently: a slow one blocks no other
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, peer: bytes, request_id: bytes, payload: bytes) -> None:
        try:
            msg = decode_payload(payload)
        except MalformedMessage as exc:
            self.dropped += 1
            log.warning("dropped malformed control request: %s", exc)
            answer: Message = Error(reason=f"malformed request: {exc}")
        else:
            answer = await self._dispatch(msg)
        try:
            self.sock.send_multipart([peer, b"", request_id, encode(answer)[1]], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client went away: nothing to tell it
            log.debug("reply to a vanished client lost: %s", exc)

    async def _dispatch(self, msg: Message) -> Message:
        handler = self.handlers.get(type(msg))
        if handler is None:
            return Error(call_id=msg.call_id, reason=f"{msg.TYPE} is not handled by this service")
        try:
            result = handler(msg)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, Message):
                raise TypeError(f"handler returned {type(result).__name__}, not a reply message")
            return result
        except Exception as exc:  # a handler bug answers an error, it does not kill the loop
            log.exception("handler for %s failed", msg.TYPE, extra={"call_id": msg.call_id})
            return Error(call_id=msg.call_id, reason=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.sock.close()


class ControlClient:
    """Sends requests to one service. Safe to share between tasks of one event loop."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str):
        self.endpoint = endpoint
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # Queue only on live connections: a request to a service that is down must time out,
        # not be delivered minutes later when it comes back (a stale "hangup" is dangerous).
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self.sock.connect(endpoint)
        self._pending: dict[bytes, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self._next = 0
        self._prefix = os.urandom(4).hex()

    async def request(self, msg: Message, timeout: float = 1.0) -> Message:
        """The reply to ``msg``; raises BusTimeout past ``timeout`` s, RemoteError on Error."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())
        self._next += 1
        request_id = f"{self._prefix}-{self._next}".encode()
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future

        async def roundtrip() -> Message:
            await self.sock.send_multipart([b"", request_id, encode(msg)[1]])
            return await future

        try:
            answer = await asyncio.wait_for(roundtrip(), timeout)
        except asyncio.TimeoutError:
            raise BusTimeout(f"no reply to {msg.TYPE} from {self.endpoint} within {timeout:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        if isinstance(answer, Error):
            raise RemoteError(answer.reason)
        return answer

    async def _read(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            if len(frames) != 3 or frames[0] != b"":
                log.warning("dropped control reply with a bad envelope (%d frames)", len(frames))
                continue
            future = self._pending.get(frames[1])
            if future is None or future.done():
                continue  # a reply that arrived after its request timed out
            try:
                future.set_result(decode_payload(frames[2]))
            except MalformedMessage as exc:
                future.set_exception(RemoteError(f"malformed reply: {exc}"))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.sock.close()
