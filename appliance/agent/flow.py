"""The agent's flow: what to do next, given what the caller said. A pure state machine.

No I/O, no clock, no asyncio: ``Flow`` takes a ``FlowState`` and an event (an utterance's
understanding, a tool's result, silence, a failed transfer) and returns the new state and a
list of actions (``Say``, ``CallTool``, ``Transfer``, ``Hangup``, ``AskLlm``, ``TakeMessage``)
that the conversation carries out. Every call can be replayed from its events in a test.

Rules:
- Anywhere, an escalation keyword ("a person, please") or an intent that routes to a transfer
  hands the call on, with a summary for the human ("Caller wants to book an appointment; name
  Ann, date 2026-11-26; asked for a person").
- A collect node takes every slot an utterance gives (several at once) and asks for the next
  missing one; a confirm node goes on at yes or no, and a no that carries a correction ("no,
  Friday") is applied and confirmed again.
- A turn the agent cannot place counts as a misunderstanding; ``escalation.max_misunderstandings``
  in a row hand the call to a person. With ``llm.free_turns`` an unplaced question outside a
  flow goes to the LLM instead.
- A failed tool gets an honest apology, then its ``on_error`` node or the hand-off.
- Templates fill ``{slot}`` and ``{result.field}``; a missing value is left blank, never raised.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .definition import CALLER_SLOT, ENTITY_SLOTS, ESCALATE, PLACEHOLDER, AgentDef, Intent, Node

MESSAGE = "@message"  # the pseudo-node of taking a message after a failed hand-off
MAX_HOPS = 20  # nodes entered in one step; more is a loop in the flow
DEFAULT_TOOL_APOLOGY = "I'm sorry, I can't reach our system right now."
NOT_CAUGHT = "Sorry, I didn't catch that."
CONNECTING = "Let me put you through to someone who can help."


# -- what the flow reads ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Understanding:
    """What the caller's utterance means (the understanding package produces one of these)."""

    text: str = ""
    intent: str | None = None
    intent_score: float = 0.0
    knowledge_id: str | None = None
    knowledge_score: float = 0.0
    slots: dict[str, Any] = field(default_factory=dict)  # date, time, part_of_day, number, phone, name
    yes_no: str | None = None  # "yes", "no" or None
    backchannel: bool = False


@dataclass(frozen=True)
class FlowState:
    node: str | None = None  # the node waiting for the caller (or a tool); None = listening for intents
    slots: dict[str, Any] = field(default_factory=dict)
    misunderstandings: int = 0  # in a row
    reprompts: int = 0  # silences in a row
    intent: str | None = None  # what the caller came for (the hand-off summary says it)
    result: dict[str, Any] = field(default_factory=dict)  # the last successful tool answer


# -- what the flow asks for ------------------------------------------------------------------------
@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class CallTool:
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Transfer:
    target: str
    uri: str
    summary: str
    context: dict[str, Any]


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


# -- templates -------------------------------------------------------------------------------------
def lookup(data: Any, path: list[str]) -> Any:
    """``data`` followed down ``path`` (keys, or list indexes as digits); None where it ends."""
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _value(name: str, slots: dict, result: dict) -> Any:
    if name.startswith("result."):
        return lookup(result, name.split(".")[1:])
    return lookup(slots, name.split("."))


# A placeholder with the little word that leads into it: "on {date}" goes as a whole when empty.
_LED_PLACEHOLDER = re.compile(r"(?:\b(?:on|at|for|in|by|to|from|with|under) )?" + PLACEHOLDER.pattern)


def render(template: str, slots: dict, result: dict | None = None) -> str:
    """``{slot}`` and ``{result.a.0.b}`` filled in. A missing value never raises: it is left
    out with the word leading into it ("for {name} on {date}" without a date: "for Ann")."""
    def fill(m: re.Match) -> str:
        value = _text(_value(m.group(1), slots, result or {}))
        return m.group(0)[:m.start(1) - 1 - m.start(0)] + value if value else ""

    text = _LED_PLACEHOLDER.sub(fill, template)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ([,.;:?!])", r"\1", text)
    text = re.sub(r"([,;:])(?=[,.;:?!])", "", text)
    return re.sub(r"^[\s,;:.]+", "", text).strip()


def render_arg(template: Any, slots: dict, result: dict) -> Any:
    """A tool argument: a lone "{slot}" keeps the value's type (an id stays an integer)."""
    if not isinstance(template, str):
        return template
    m = PLACEHOLDER.fullmatch(template.strip())
    if m:
        value = _value(m.group(1), slots, result)
        return "" if value is None else value
    return render(template, slots, result)


def _empty(data: Any) -> bool:
    """No answer: nothing at all, or only empty lists ({"appointments": []})."""
    if not data:
        return True
    if isinstance(data, dict):
        boxes = [v for v in data.values() if isinstance(v, (list, dict))]
        return bool(boxes) and not any(boxes)
    return False


# -- the flow --------------------------------------------------------------------------------------
BARE_NO_WORDS = 4  # "No.", "No, thanks.", "Nope, that's it.", "No, nothing else."
_QUESTION_START = re.compile(r"^\W*(?:what|when|where|how|who|which|why|whose|do|does|did|is|are|was|were|can|"
                             r"could|will|would|should|may|have|has|any|i'd like to know|tell me)\b", re.I)


def _is_question(text: str) -> bool:
    """Asked, by its mark or its first word (a recogniser sometimes drops the mark)."""
    return isinstance(text, str) and (text.rstrip().endswith("?") or bool(_QUESTION_START.match(text)))


def _declines(u, intent: Intent | None) -> bool:
    """A bare "no" while nothing is under way: every open question then is "how can I help" or
    "anything else?", so the caller is done. Not "no, what are your hours" (longer), nor "no,
    I want to book" (an intent with a flow), nor a no with a date or time in it."""
    if getattr(u, "yes_no", None) != "no" or getattr(u, "slots", None):
        return False
    if intent is not None and (intent.node or intent.transfer):
        return False
    return len((getattr(u, "text", "") or "").split()) <= BARE_NO_WORDS


class Flow:
    def __init__(self, agent: AgentDef):
        self.agent = agent
        self.nodes = agent.flow
        self.esc = agent.escalation
        self.keywords = [k.lower() for k in self.esc.keywords if k.strip()]

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, caller: str = "") -> FlowState:
        return FlowState(slots={CALLER_SLOT: caller} if caller else {})

    def snapshot(self, state: FlowState) -> dict:
        """The state as JSON-able data, for the call record (a restarted agentd resumes from it)."""
        return asdict(state)

    def restore(self, data: dict | None, caller: str = "") -> FlowState:
        if not isinstance(data, dict):
            return self.initial_state(caller)
        known = {k: v for k, v in data.items() if k in FlowState.__dataclass_fields__}
        state = FlowState(**known)
        if state.node not in self.nodes and state.node != MESSAGE:
            state = replace(state, node=None)
        return replace(state, slots={**({CALLER_SLOT: caller} if caller else {}), **state.slots})

    # -- events -----------------------------------------------------------------------------------
    def start(self, state: FlowState | None = None) -> list[Action]:
        state = state or self.initial_state()
        return [Say(render(self.agent.greeting, state.slots))]

    def on_utterance(self, state: FlowState, u) -> tuple[FlowState, list[Action]]:
        state = replace(state, reprompts=0)
        if state.node == MESSAGE:
            return self._message(state, u)
        intent = self.agent.intent(getattr(u, "intent", None))
        if intent is not None and self._hands_off(intent):  # "someone in billing": billing, not the front desk
            return self._route(state, intent, u)
        if self._asks_for_person(u.text):
            return self._escalate(state, "asked for a person")
        node = self.nodes.get(state.node) if state.node else None
        if node is not None and node.kind == "collect":
            return self._collect(state, node, u, intent)
        if node is not None and node.kind == "confirm":
            return self._confirm(state, node, u, intent)
        return self._listening(replace(state, node=None), u, intent)

    def on_tool_result(self, state: FlowState, result) -> tuple[FlowState, list[Action]]:
        node = self.nodes.get(state.node) if state.node else None
        if node is None or node.kind != "tool":
            return state, []  # a late answer for a node we have left
        data = getattr(result, "data", None)
        if getattr(result, "status", "error") == "ok":
            state = replace(state, result=data if isinstance(data, dict) else {"value": data})
            if node.on_empty and _empty(data):
                return self._enter(state, node.on_empty)
            said = [Say(render(node.say_ok, state.slots, state.result))] if node.say_ok else []
            state, actions = self._enter(state, node.next)
            return state, said + actions
        apology = render(node.say_error, state.slots, state.result) or DEFAULT_TOOL_APOLOGY
        http_status = getattr(result, "http_status", None) or 0
        if node.on_reject and 400 <= http_status < 500:
            return self._enter(state, node.on_reject)
        if node.on_error and node.on_error != ESCALATE:
            return self._enter(state, node.on_error)
        if node.on_error == ESCALATE or self.esc.on_tool_failure:
            return self._escalate(state, f"{node.tool} failed", apology=apology)
        return replace(state, node=None), [Say(f"{apology} Is there anything else I can help with?")]

    def on_no_input(self, state: FlowState) -> tuple[FlowState, list[Action]]:
        n = state.reprompts + 1
        if n > self.agent.turns.max_reprompts:
            return replace(state, node=None, reprompts=n), [Say(render(self.agent.goodbye, state.slots)),
                                                            Hangup("no-input")]
        question = self._question(state)
        return replace(state, reprompts=n), [Say(f"{self.agent.turns.reprompt} {question}".strip())]

    def on_transfer_failed(self, state: FlowState, status: int = 0) -> tuple[FlowState, list[Action]]:
        """Nobody took the call (busy, no answer): it is ours again; offer to take a message."""
        return self._offer_message(state)

    # -- the steps --------------------------------------------------------------------------------
    def _listening(self, state: FlowState, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        if _declines(u, intent):  # "No." to "Is there anything else I can help with?": done
            return replace(self._understood(state), node=None), [Say(render(self.agent.goodbye, state.slots)),
                                                                 Hangup("goodbye")]
        if intent is not None:
            return self._route(state, intent, u)
        entry = self.agent.answer(getattr(u, "knowledge_id", None))
        if entry is not None:
            return self._understood(state), [Say(entry.answer)]
        if getattr(u, "backchannel", False):
            return state, []  # "okay", "mhm": nothing to answer
        if self.agent.llm.free_turns:
            return self._understood(state), [AskLlm()]
        return self._not_understood(state, "Could you say that another way?")

    def _route(self, state: FlowState, intent: Intent, u) -> tuple[FlowState, list[Action]]:
        state = self._understood(state)
        if intent.knowledge:
            return state, [Say(self.agent.answer(intent.knowledge).answer)]
        if intent.end:
            return replace(state, node=None), [Say(render(self.agent.goodbye, state.slots)), Hangup("goodbye")]
        state = replace(state, intent=intent.name)
        if intent.transfer:
            return self._transfer(state, intent.transfer, f"asked for {intent.transfer.replace('_', ' ')}",
                                  say="One moment, I'll put you through.")
        fresh = {k: v for k, v in state.slots.items() if k == CALLER_SLOT}
        return self._enter(replace(state, slots=fresh, result={}), intent.node, offered=_slots(u))

    def _collect(self, state: FlowState, node: Node, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        filled = self._fill(node, state, u)
        if filled:
            return self._enter(self._understood(replace(state, slots={**state.slots, **filled})), node.id,
                               resume=True)
        if intent is not None and intent.name != state.intent and not intent.knowledge:
            return self._route(state, intent, u)
        if intent is not None and intent.name == state.intent:
            return state, [Say(self._question(state))]  # "I want to book" again: just ask
        return self._aside(state, u, intent)

    def _confirm(self, state: FlowState, node: Node, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        corrections = {k: v for k, v in _slots(u).items() if k in state.slots and k != CALLER_SLOT}
        if corrections:  # "no, Friday" or "yes but at four": apply it and confirm again
            state = self._understood(replace(state, slots={**state.slots, **corrections}))
            return state, [Say(render(node.say, state.slots, state.result))]
        answer = getattr(u, "yes_no", None)
        if answer == "yes":
            return self._enter(self._understood(state), node.yes)
        if answer == "no":
            return self._enter(self._understood(state), node.no)
        if intent is not None and intent.name != state.intent and not intent.knowledge:
            return self._route(state, intent, u)
        return self._aside(state, u, intent)

    def _aside(self, state: FlowState, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        """Mid-flow, a question we know the answer to gets it, then the flow's question again. An
        answer that fits nothing ("at an AM", a misheard "at ten AM") is no question: the flow's
        question again, not the nearest piece of knowledge."""
        entry = self.agent.answer(intent.knowledge if intent is not None else getattr(u, "knowledge_id", None))
        if entry is not None and _is_question(getattr(u, "text", "")):
            return self._understood(state), [Say(entry.answer), Say(self._question(state))]
        return self._not_understood(state, self._question(state))

    def _enter(self, state: FlowState, node_id: str, *, offered: dict | None = None,
               resume: bool = False) -> tuple[FlowState, list[Action]]:
        """Go to ``node_id`` and on through nodes that need no answer from the caller."""
        actions: list[Action] = []
        for _ in range(MAX_HOPS):
            if not node_id:
                return replace(state, node=None), actions
            node = self.nodes[node_id]
            state = replace(state, node=node_id)
            slots, result = state.slots, state.result
            if node.kind == "collect":
                if not resume:
                    slots = {k: v for k, v in slots.items() if not (node.reset and k in node.slots)}
                    for slot, template in node.defaults.items():
                        if not slots.get(slot) and (value := render(template, slots, result)):
                            slots[slot] = value
                    slots.update({k: v for k, v in (offered or {}).items() if k in node.slots})
                state = replace(state, slots=slots)
                if self._missing(node, slots):
                    return state, actions + [Say(self._question(state))]
                node_id, resume = node.next, False
            elif node.kind == "confirm":
                return state, actions + [Say(render(node.say, slots, result))]
            elif node.kind == "tool":
                args = {k: render_arg(v, slots, result) for k, v in node.args.items()}
                return state, actions + [CallTool(node.tool, args)]
            elif node.kind == "transfer":
                state, more = self._transfer(state, node.target, f"flow {node_id}",
                                             say=render(node.say, slots, result))
                return state, actions + more
            elif node.kind == "end":
                text = render(node.say, slots, result) or render(self.agent.goodbye, slots)
                return replace(state, node=None), actions + [Say(text), Hangup("completed")]
            elif node.kind == "llm":
                actions.append(AskLlm(render(node.instructions, slots, result)))
                node_id = node.next
            else:  # say
                actions.append(Say(render(node.say, slots, result)))
                node_id = node.next
        return replace(state, node=None), actions  # a loop of nodes that never wait: stop here

    # -- slots ------------------------------------------------------------------------------------
    @staticmethod
    def _missing(node: Node, slots: dict) -> str | None:
        return next((s for s in node.slots if slots.get(s) in (None, "")), None)

    def _fill(self, node: Node, state: FlowState, u) -> dict:
        """The node's slots this utterance gives; the slot being asked for may take the words."""
        given = {k: v for k, v in _slots(u).items() if k in node.slots}
        asked = self._missing(node, state.slots)
        if given or asked is None or getattr(u, "yes_no", None) or getattr(u, "backchannel", False) \
                or getattr(u, "intent", None) or getattr(u, "knowledge_id", None):
            return given  # words that mean something else are no answer
        text = u.text.strip().strip(".!?,").strip()
        if asked == "name":
            text = re.sub(r"^(my name is|my name's|it's|it is|this is|i'm|i am)\s+", "", text, flags=re.I)
            return {"name": text} if 0 < len(text.split()) <= 4 else {}
        if asked not in ENTITY_SLOTS and text:
            return {asked: text}  # a free-text slot (a reason, a message): the words themselves
        return {}

    def _question(self, state: FlowState) -> str:
        """What the current node asks (the re-prompt repeats it)."""
        node = self.nodes.get(state.node) if state.node else None
        if node is None:
            return ""
        if node.kind == "collect":
            slot = self._missing(node, state.slots)
            return render(node.prompts.get(slot, ""), state.slots, state.result) if slot else ""
        if node.kind == "confirm":
            return render(node.say, state.slots, state.result)
        return ""

    # -- understanding, escalation ------------------------------------------------------------------
    @staticmethod
    def _understood(state: FlowState) -> FlowState:
        return replace(state, misunderstandings=0) if state.misunderstandings else state

    def _not_understood(self, state: FlowState, question: str) -> tuple[FlowState, list[Action]]:
        state = replace(state, misunderstandings=state.misunderstandings + 1)
        if state.misunderstandings >= self.esc.max_misunderstandings:
            return self._escalate(state, f"not understood {state.misunderstandings} times",
                                  apology="I'm sorry, I'm having trouble understanding.")
        return state, [Say(f"{NOT_CAUGHT} {question}".strip())]

    def _hands_off(self, intent: Intent) -> bool:
        return bool(intent.transfer) or (intent.node in self.nodes and self.nodes[intent.node].kind == "transfer")

    def _asks_for_person(self, text: str) -> bool:
        words = " " + re.sub(r"[^a-z0-9']+", " ", text.lower()) + " "
        return any(f" {k} " in words for k in self.keywords)

    def _escalate(self, state: FlowState, reason: str, *, apology: str = "") -> tuple[FlowState, list[Action]]:
        if self.agent.target(self.esc.target) is None:
            state, actions = self._offer_message(state)
            return state, ([Say(apology)] if apology else []) + actions
        return self._transfer(state, self.esc.target, reason, say=f"{apology} {CONNECTING}".strip())

    def _transfer(self, state: FlowState, target_name: str, reason: str, *, say: str = "") -> tuple[FlowState, list[Action]]:
        target = self.agent.target(target_name)
        context = {"intent": state.intent or "", "slots": self._told(state), "reason": reason,
                   "caller": state.slots.get(CALLER_SLOT, ""), "node": state.node or ""}
        actions: list[Action] = [Say(say)] if say else []
        state = replace(state, node=None, misunderstandings=0)
        return state, actions + [Transfer(target.name, target.uri, self.summary(state, reason), context)]

    def summary(self, state: FlowState, reason: str = "") -> str:
        """One line for the human taking the call: what the caller wants and what we know."""
        intent = self.agent.intent(state.intent)
        told = ", ".join(f"{k} {_text(v)}" for k, v in self._told(state).items())
        if intent is None:
            return "; ".join(p for p in (f"Caller {reason}" if reason else "Caller", told) if p)
        want = intent.description or intent.name.replace("_", " ")
        return "; ".join(p for p in (f"Caller wants to {want}", told, reason) if p)

    def _told(self, state: FlowState) -> dict[str, Any]:
        """The slots the caller gave, in the order the flows ask for them."""
        order = {name: i for i, name in enumerate(self.agent.collected_slots())}
        told = [(k, v) for k, v in state.slots.items() if k != CALLER_SLOT and v not in (None, "")]
        return dict(sorted(told, key=lambda kv: order.get(kv[0], len(order))))

    # -- taking a message ---------------------------------------------------------------------------
    def _offer_message(self, state: FlowState) -> tuple[FlowState, list[Action]]:
        state = replace(state, node=MESSAGE, misunderstandings=0)
        return state, [Say(render(self.esc.message_if_unavailable, state.slots)), TakeMessage()]

    def _message(self, state: FlowState, u) -> tuple[FlowState, list[Action]]:
        short = len(u.text.split()) <= 3
        answer = getattr(u, "yes_no", None)
        if short and answer == "no":
            return replace(state, node=None), [Say(render(self.agent.goodbye, state.slots)), Hangup("no-message")]
        if (short and answer == "yes") or getattr(u, "backchannel", False) or not u.text.strip():
            return state, [Say("Please go ahead, I'm listening.")]
        summary = self.summary(state, "left a message")
        slots = {**state.slots, "message": u.text.strip()}
        state = replace(state, node=None, slots=slots)
        return state, [TakeMessage(message=u.text.strip(), summary=summary),
                       Say("Thank you, I'll make sure they get your message. " + render(self.agent.goodbye, slots)),
                       Hangup("message-taken")]


def _slots(u) -> dict:
    return {k: v for k, v in (getattr(u, "slots", None) or {}).items() if v not in (None, "")}
