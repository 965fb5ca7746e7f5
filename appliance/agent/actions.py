"""What the flow asks the conversation to do: one class per action, the one vocabulary.

The flow (flow.py) returns these; the conversation (conversation.py) carries them out,
dispatching on the type. Nothing else names an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class CallTool:
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Transfer:
    """Hand the call to a person at ``uri``, with what we know for them."""

    target: str
    uri: str
    summary: str
    context: dict[str, Any]
    context_headers: bool = True  # the target takes the context as Refer-To URI headers


@dataclass(frozen=True)
class Hangup:
    reason: str


@dataclass(frozen=True)
class AskLlm:
    instructions: str = ""


@dataclass(frozen=True)
class TakeMessage:
    """Without ``message``: the call is now taking a message. With it: the message, to record."""

    message: str = ""
    summary: str = ""


Action = Say | CallTool | Transfer | Hangup | AskLlm | TakeMessage
