"""Messages to and from ZeroMQ frames, with strict checks: a bad message is an error value
for the caller to log and drop, never an exception that escapes a receive loop."""

from __future__ import annotations

import json
import typing
from dataclasses import fields

from ..config.typecheck import conforms
from .messages import REGISTRY, SCHEMA_VERSION, Message

MAX_PAYLOAD = 64 * 1024


class MalformedMessage(Exception):
    """Frames that are not a valid message of this schema version; says why."""


def encode(msg: Message) -> list[bytes]:
    """[topic, payload]; the topic is the type so subscribers filter in ZeroMQ, not Python."""
    body = {"type": msg.TYPE, "v": SCHEMA_VERSION}
    for f in fields(msg):
        body[f.name] = getattr(msg, f.name)
    return [msg.TYPE.encode(), json.dumps(body, separators=(",", ":")).encode()]


def decode_payload(payload: bytes) -> Message:
    if len(payload) > MAX_PAYLOAD:
        raise MalformedMessage(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, 4300+ digit ints, deep nesting
        raise MalformedMessage(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise MalformedMessage("not a JSON object")
    type_name, version = body.pop("type", None), body.pop("v", None)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise MalformedMessage(f"schema version {version!r}, this build speaks {SCHEMA_VERSION}")
    cls = REGISTRY.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise MalformedMessage(f"unknown message type {type_name!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    extra = set(body) - names
    if extra:
        raise MalformedMessage(f"{type_name}: unknown field(s) {', '.join(sorted(extra))}")
    for name, value in body.items():
        if not conforms(value, hints[name]):
            raise MalformedMessage(f"{type_name}.{name}: {value!r} is not {hints[name]}")
    try:
        return cls(**body)
    except TypeError as exc:  # a required field is missing
        raise MalformedMessage(f"{type_name}: {exc}") from None


def decode(frames: list[bytes]) -> Message:
    """From [topic, payload] as published; the topic must agree with the payload's type."""
    if len(frames) != 2:
        raise MalformedMessage(f"expected 2 frames (topic, payload), got {len(frames)}")
    msg = decode_payload(frames[1])
    if frames[0] != msg.TYPE.encode():
        raise MalformedMessage(f"topic {frames[0][:40]!r} does not match type {msg.TYPE}")
    return msg
