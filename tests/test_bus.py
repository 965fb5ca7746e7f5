"""The bus over real ZeroMQ ipc sockets: events, control with deadlines, and every kind of
malformed message being dropped (and counted) without taking the receiver down."""

from __future__ import annotations

import asyncio
import json
import tempfile

import pytest
import zmq
import zmq.asyncio

from appliance.bus import (
    BusTimeout,
    ControlClient,
    ControlServer,
    MalformedMessage,
    Publisher,
    RemoteError,
    Subscriber,
    decode,
    decode_payload,
    encode,
    endpoints,
)
from appliance.bus.messages import (
    REGISTRY,
    SCHEMA_VERSION,
    CallEnded,
    CallStarted,
    Dtmf,
    CallHangup,
    Ok,
    PlayFlush,
    ServiceStatus,
    StatusRequest,
    CallTransfer,
)


@pytest.fixture
def run_dir():
    with tempfile.TemporaryDirectory(prefix="bus-", dir="/tmp") as d:
        yield d


async def until_received(pub: Publisher, sub: Subscriber, msg, timeout=5.0):
    """Publish until the subscriber has joined (ZeroMQ's slow-joiner), return what arrived."""

    async def go():
        while True:
            pub.publish(msg)
            try:
                return await asyncio.wait_for(sub.recv(), 0.05)
            except asyncio.TimeoutError:
                continue

    return await asyncio.wait_for(go(), timeout)


@pytest.mark.parametrize("msg", [
    CallStarted(call_id="c1", caller="+4930123", callee="200", headers={"User-Agent": "Asterisk"}),
    CallEnded(call_id="c1", reason="caller-hangup"),
    Dtmf(call_id="c1", digit="5", duration_ms=160),
    CallTransfer(call_id="c1", target="sip:200@pbx", replaces=""),
    ServiceStatus(service="sipd", pid=1, state="ready", uptime_s=1.5, version="0", details={"calls": 2, "ok": True}),
])
def test_every_field_survives_encode_decode(msg):
    back = decode(encode(msg))
    assert back == msg and type(back) is type(msg)


def test_every_message_type_is_registered_once_with_a_kind():
    assert REGISTRY and all(cls.KIND in ("event", "control", "reply") for cls in REGISTRY.values())
    assert all(cls.TYPE == name for name, cls in REGISTRY.items())


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "not JSON"),
    (b"{", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"type": "call.ended", "v": SCHEMA_VERSION + 1, "reason": "x"}).encode(), "schema version 2"),
    (json.dumps({"type": "call.ended", "reason": "x"}).encode(), "schema version None"),
    (json.dumps({"type": "call.exploded", "v": SCHEMA_VERSION}).encode(), "unknown message type 'call.exploded'"),
    (json.dumps({"type": "call.ended", "v": SCHEMA_VERSION}).encode(), "missing 1 required"),
    (json.dumps({"type": "call.ended", "v": SCHEMA_VERSION, "reason": 5}).encode(), "call.ended.reason: 5"),
    (json.dumps({"type": "call.dtmf", "v": SCHEMA_VERSION, "digit": "1", "duration_ms": True}).encode(), "duration_ms"),
    (json.dumps({"type": "call.ended", "v": SCHEMA_VERSION, "reason": "x", "evil": 1}).encode(), "unknown field(s) evil"),
    (b"{" + b'"a":1,' * 20000 + b'"b":2}', "exceeds"),
    (b'{"type":"call.ended","v":1,"reason":"x","n":' + b"9" * 5000 + b"}", "not JSON"),  # int too long
    (b"[" * 30000 + b"]" * 30000, "not JSON"),  # nesting deep enough to blow the recursion limit
    (json.dumps({"type": "call.ended", "v": True, "reason": "x"}).encode(), "schema version True"),
    (json.dumps({"type": "call.ended", "v": 1.0, "reason": "x"}).encode(), "schema version 1.0"),
])
def test_malformed_payloads_are_rejected_with_the_reason(payload, reason):
    with pytest.raises(MalformedMessage, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode_payload(payload)


def test_topic_must_match_the_payload_type():
    frames = encode(CallEnded(call_id="c", reason="x"))
    with pytest.raises(MalformedMessage, match="does not match"):
        decode([b"call.started", frames[1]])
    with pytest.raises(MalformedMessage, match="expected 2 frames"):
        decode(frames[:1])


def test_events_reach_subscribers_filtered_by_type_and_garbage_is_dropped(run_dir):
    async def scenario():
        ctx = zmq.asyncio.Context()
        ep = endpoints.events(run_dir, "sipd")
        pub = Publisher(ctx, ep)
        calls_only = Subscriber(ctx, [ep], types=["call."])
        got = await until_received(pub, calls_only, CallStarted(call_id="a", caller="1", callee="2"))
        assert got == CallStarted(call_id="a", caller="1", callee="2", ts_ns=got.ts_ns)
        while True:  # drain the slow-joiner retries
            try:
                await asyncio.wait_for(calls_only.recv(), 0.1)
            except asyncio.TimeoutError:
                break
        # garbage straight onto the same socket, as a buggy or hostile peer would send it
        pub.sock.send_multipart([b"call.ended", b"{not json"])
        pub.sock.send_multipart([b"call.ended", json.dumps({"type": "call.ended", "v": 99}).encode()])
        pub.sock.send_multipart([b"call.only-one-frame"])
        pub.publish(StatusRequest())  # filtered out by topic, never reaches Python
        pub.publish(CallEnded(call_id="a", reason="caller-hangup"))
        after = await asyncio.wait_for(calls_only.recv(), 5)
        assert isinstance(after, CallEnded) and after.reason == "caller-hangup"
        assert calls_only.dropped == 3
        for s in (calls_only, pub):
            s.close()
        ctx.term()

    asyncio.run(scenario())


def test_control_round_trip_errors_and_deadlines(run_dir):
    async def scenario():
        ctx = zmq.asyncio.Context()
        ep = endpoints.control(run_dir, "sipd")
        server = ControlServer(ctx, ep)
        flushed = []

        async def flush(msg):
            flushed.append(msg.call_id)
            return Ok(call_id=msg.call_id, detail="flushed")

        def broken(_msg):
            raise RuntimeError("transfer target table missing")

        server.on(PlayFlush, flush)
        server.on(CallTransfer, broken)
        server.on(CallHangup, lambda m: asyncio.sleep(10))  # a handler that hangs
        server.on(Dtmf, lambda m: None)  # a buggy handler that forgets to answer
        serving = asyncio.create_task(server.serve())
        client = ControlClient(ctx, ep)

        reply = await client.request(PlayFlush(call_id="c9"), timeout=5)
        assert isinstance(reply, Ok) and reply.detail == "flushed" and flushed == ["c9"]
        with pytest.raises(RemoteError, match="RuntimeError: transfer target table missing"):
            await client.request(CallTransfer(call_id="c9", target="sip:1@x"), timeout=5)
        with pytest.raises(RemoteError, match="ctl.status is not handled"):
            await client.request(StatusRequest(), timeout=5)
        with pytest.raises(BusTimeout, match="no reply to ctl.hangup"):
            await client.request(CallHangup(call_id="c9"), timeout=0.3)
        with pytest.raises(RemoteError, match="handler returned NoneType, not a reply message"):
            await client.request(Dtmf(call_id="c9", digit="1", duration_ms=100), timeout=5)

        # a malformed request gets an error reply; a bad envelope is dropped; the server lives on
        raw = ctx.socket(zmq.DEALER)
        raw.connect(ep)
        await raw.send_multipart([b"", b"r1", b"{broken"])
        frames = await asyncio.wait_for(raw.recv_multipart(), 5)
        assert frames[1] == b"r1" and "malformed request" in decode_payload(frames[2]).reason
        await raw.send_multipart([b"just-one-frame"])
        reply = await client.request(PlayFlush(call_id="c10"), timeout=5)
        assert isinstance(reply, Ok) and server.dropped == 2
        raw.close()
        client.close()
        serving.cancel()
        server.close()
        ctx.term()

    asyncio.run(scenario())


def test_request_to_a_service_that_is_down_times_out_and_is_not_delivered_later(run_dir):
    async def scenario():
        ctx = zmq.asyncio.Context()
        ep = endpoints.control(run_dir, "ttsd")
        client = ControlClient(ctx, ep)
        with pytest.raises(BusTimeout):
            await client.request(CallHangup(call_id="old"), timeout=0.3)
        server = ControlServer(ctx, ep)  # the service comes up afterwards
        seen = []
        server.on(CallHangup, lambda m: seen.append(m.call_id) or Ok())
        server.on(PlayFlush, lambda m: seen.append(m.call_id) or Ok())
        serving = asyncio.create_task(server.serve())
        await client.request(PlayFlush(call_id="new"), timeout=5)
        assert seen == ["new"]  # the stale hangup was never queued for it
        client.close()
        serving.cancel()
        server.close()
        ctx.term()

    asyncio.run(scenario())


def test_a_malformed_reply_fails_one_request_and_the_client_keeps_working(run_dir):
    async def scenario():
        ctx = zmq.asyncio.Context()
        ep = endpoints.control(run_dir, "agentd")
        rogue = ctx.socket(zmq.ROUTER)  # answers the first request with a hostile payload
        rogue.bind(ep)
        client = ControlClient(ctx, ep)

        async def serve_rogue():
            for n in range(2):
                peer, empty, rid, _ = await rogue.recv_multipart()
                body = b"[" * 30000 if n == 0 else encode(Ok(detail="fine"))[1]
                await rogue.send_multipart([peer, empty, rid, body])

        serving = asyncio.create_task(serve_rogue())
        with pytest.raises(RemoteError, match="malformed reply"):
            await client.request(PlayFlush(call_id="x"), timeout=5)
        reply = await client.request(PlayFlush(call_id="x"), timeout=5)
        assert isinstance(reply, Ok) and reply.detail == "fine"
        await serving
        client.close()
        rogue.close()
        ctx.term()

    asyncio.run(scenario())
