"""The event/control bus: ZeroMQ over ipc:// sockets under the runtime dir."""

from . import endpoints, messages
from .codec import MalformedMessage, decode, decode_payload, encode
from .control import BusTimeout, ControlClient, ControlServer, RemoteError
from .pubsub import Publisher, Subscriber

__all__ = [
    "BusTimeout", "ControlClient", "ControlServer", "MalformedMessage", "Publisher", "RemoteError",
    "Subscriber", "decode", "decode_payload", "encode", "endpoints", "messages",
]
