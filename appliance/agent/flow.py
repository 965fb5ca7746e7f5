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

from ..speech.textnorm import to_digits
from .actions import Action, AskLlm, CallTool, Hangup, Say, TakeMessage, Transfer
from .definition import CALLER_SLOT, ENTITY_SLOTS, ESCALATE, PLACEHOLDER, AgentDef, Intent, Node, NodeKind
from .spoken import spoken, spoken_time
from .understanding import Understanding
from .understanding.names import likeliest

__all__ = ["Flow", "FlowState", "Understanding", "render", "render_arg", "Action", "AskLlm", "CallTool", "Hangup",
           "Say", "TakeMessage", "Transfer"]

WITHDRAWN = "withdrawn"  # why a goal was not reached when the caller decided against it themselves
MESSAGE = "@message"  # the pseudo-node of taking a message after a failed hand-off
MAX_HOPS = 20  # nodes entered in one step; more is a loop in the flow
DEFAULT_TOOL_APOLOGY = "I'm sorry, our system isn't answering right now."
NOT_CAUGHT = "Sorry, I didn't catch that."
CONNECTING = "Let me put you through to someone who can help."


# -- what the flow keeps -------------------------------------------------------------------------
@dataclass(frozen=True)
class FlowState:
    node: str | None = None  # the node waiting for the caller (or a tool); None = listening for intents
    slots: dict[str, Any] = field(default_factory=dict)
    misunderstandings: int = 0  # in a row
    reprompts: int = 0  # silences in a row
    intent: str | None = None  # what the caller came for: the goal of the flow it started
    result: dict[str, Any] = field(default_factory=dict)  # the last successful tool answer
    reached: bool = False  # the goal's completing tool succeeded
    why: str = ""  # why the goal is not reached yet (the last thing that went wrong)
    asked: dict[str, int] = field(default_factory=dict)  # question as said -> times asked
    pending: dict[str, Any] = field(default_factory=dict)  # a value read back, awaiting yes or no
    which_part: bool = False  # a bare "no" at a confirmation: we asked which part to change
    transfer_failed: bool = False  # nobody took a hand-off in this call
    digits: str = ""  # a phone number said in groups, so far ("555" ... "201" ... "3344")
    taken: list[str] = field(default_factory=list)  # "date time" slots a tool answered 409 for in this call


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


def _text(value: Any, said: bool = False) -> str:
    """A value in a sentence; ``said``: dates and clock times as the caller hears them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):  # "nine thirty a.m., ten a.m. and ten thirty a.m."
        items = [t for t in (_text(v, said) for v in value) if t]
        return " and ".join([", ".join(items[:-1]), items[-1]]) if len(items) > 1 else "".join(items)
    return spoken(str(value)) if said else str(value)


def _value(name: str, slots: dict, result: dict) -> Any:
    if name.startswith("result."):
        return lookup(result, name.split(".")[1:])
    return lookup(slots, name.split("."))


# A placeholder with the little word that leads into it: "on {date}" goes as a whole when empty.
_LED_PLACEHOLDER = re.compile(r"(?:\b(?:on|at|for|in|by|to|from|with|under) )?" + PLACEHOLDER.pattern)


def render(template: str, slots: dict, result: dict | None = None, *, said: bool = True) -> str:
    """``{slot}`` and ``{result.a.0.b}`` filled in, dates and times as the caller hears them
    ("Tuesday, December fifteenth", "ten a.m.") unless ``said`` is off (a tool's argument). A
    missing value never raises: it is left out with the word leading into it ("for {name} on
    {date}" without a date: "for Ann")."""
    def fill(m: re.Match) -> str:
        value = _text(_value(m.group(1), slots, result or {}), said)
        return m.group(0)[:m.start(1) - 1 - m.start(0)] + value if value else ""

    text = _LED_PLACEHOLDER.sub(fill, template)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ([,.;:?!])", r"\1", text)
    text = re.sub(r"([,;:])(?=[,.;:?!])", "", text)
    text = re.sub(r"(?<=\b[ap]\.m\.)\.", "", text)  # "ten a.m.." -> "ten a.m."
    return re.sub(r"^[\s,;:.]+", "", text).strip()


def render_arg(template: Any, slots: dict, result: dict) -> Any:
    """A tool argument: a lone "{slot}" keeps the value's type (an id stays an integer)."""
    if not isinstance(template, str):
        return template
    m = PLACEHOLDER.fullmatch(template.strip())
    if m:
        value = _value(m.group(1), slots, result)
        return "" if value is None else value
    return render(template, slots, result, said=False)


def _said_name(text: str) -> str:
    """The name in an answer to "May I have your name?": "My name is Lisa Jones. That's
    L-I-S-A ..." -> "Lisa Jones" (the name, not its spelling)."""
    text = re.sub(r"^(my name is|my name's|it's|it is|this is|i'm|i am)\s+", "", text.strip(), flags=re.I)
    text = re.split(r"[.,;]\s*(?:that's|that is|spelled|spelt|it's spelled)\b", text, flags=re.I)[0]
    return re.sub(r"\s+", " ", text.replace(",", " ")).strip().strip(".!?").strip()


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


def _wh_question(u) -> bool:
    """A question about something ("Before I pick a day, what time do you close on Fridays?"),
    which a day or time inside it does not make an answer; not "Could I come in on Friday?"."""
    text = getattr(u, "text", "") or ""
    return text.rstrip().endswith("?") and bool(re.search(r"\b(?:what|when|how|where|why|which|who)\b", text, re.I))


QUESTION_ROUTE_SCORE = 0.7  # a question matched to a flow's intent below this is a question about it


def _asks_about(u) -> bool:
    """A wh-question ("how much", "what does") that only loosely matched a flow's intent and
    gives it nothing to go on: it asks about the thing, it does not ask to do it."""
    text = getattr(u, "text", "") or ""
    return bool(re.match(r"^\W*(?:how|what|which|why|who|where)\b", text, re.I)) and not _slots(u) \
        and getattr(u, "intent_score", 1.0) < QUESTION_ROUTE_SCORE


def _declines(u, intent: Intent | None) -> bool:
    """A bare "no" while nothing is under way: every open question then is "how can I help" or
    "anything else?", so the caller is done. Not "no, what are your hours" (longer), nor "no,
    I want to book" (an intent with a flow), nor a no with a date or time in it."""
    if getattr(u, "yes_no", None) != "no" or getattr(u, "slots", None):
        return False
    if intent is not None and (intent.node or intent.transfer):
        return False
    return len((getattr(u, "text", "") or "").split()) <= BARE_NO_WORDS


# A correction that names what is wrong without the new value ("the time's wrong").
_SLOT_WORDS = {"time": r"time|hour|o'clock", "date": r"day|date", "name": r"name|spelling|spelt|spelled",
               "phone": r"number|phone"}
_WRONG = re.compile(r"\b(?:wrong|not right|incorrect|change|not (?:the|that)|mistake|fix)\b", re.I)
_MAKE_IT = re.compile(r"\b(?:make it|change it to|move it to|how about|instead|rather|actually)\b", re.I)
_EDGE = re.compile(r"\b(?:(?P<early>as early as (?:possible|you can)|earliest|first thing|first (?:available|"
                   r"appointment|slot))|(?P<late>as late as (?:possible|you can)|latest|last (?:appointment|slot)))\b",
                   re.I)
_PART_NAMES = {"date": "the day", "time": "the time", "name": "the name", "phone": "the phone number"}


def _named_slots(text: str, among) -> list[str]:
    low = (text or "").lower()
    return [slot for slot in among if slot in _SLOT_WORDS and re.search(rf"\b(?:{_SLOT_WORDS[slot]})\b", low)]


def _with_hour(slots: dict) -> dict:
    """``slots`` with a bare number read as the hour it names when no time was heard ("make it
    eleven", "at two"): the one place a number becomes a time."""
    if "time" in slots or "number" not in slots or (hour := _hour_from_number(slots["number"])) is None:
        return slots
    return {**slots, "time": hour}


def _hour_from_number(number: str) -> str | None:
    """"make it eleven": a bare hour in business terms (1-6 afternoon, 7-12 morning/noon)."""
    if not number.isdigit() or not 1 <= int(number) <= 12:
        return None
    h = int(number)
    return f"{h + 12 if 1 <= h <= 6 else h:02d}:00"


# What answers for a slot sound like: with the question, the recogniser's prompt (Whisper reads
# it as the text before the audio, and leans towards these words and their spelling).
VOCABULARY = {
    "time": "At ten a.m. Nine thirty in the morning. Two p.m. Half past eleven. Four o'clock.",
    "date": "On Monday. Tuesday. Next Thursday. Friday the twelfth. Tomorrow.",
    "phone": "My number is 555 123 4567.",
    "name": "",  # an example name would be written for the caller's own ("Anna White" came out "Ann a white")
    "yes_no": "Yes, that's right. No.",
}


class Flow:
    def __init__(self, agent: AgentDef):
        self.agent = agent
        self.nodes = agent.flow
        self.esc = agent.escalation
        self.hours = agent.hours
        self.collected = set(agent.collected_slots())
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

    def fixed_lines(self) -> list[str]:
        """Every sentence this agent says the same way to every caller (its greeting, questions,
        answers, apologies, the fixed sentences of its templates): ttsd synthesises them when
        the agent loads (tts.prepare), so no caller waits for them."""
        agent, esc = self.agent, self.esc
        texts = [agent.greeting, agent.goodbye, agent.turns.reprompt, esc.message_if_unavailable,
                 NOT_CAUGHT, CONNECTING, DEFAULT_TOOL_APOLOGY, "Please go ahead, I'm listening.",
                 "I'm sorry, I'm not getting this right.", "I'm sorry, I'm having trouble understanding.",
                 *(k.answer for k in agent.knowledge)]
        for node in self.nodes.values():
            texts += [node.say, node.say_ok, node.say_error, *node.prompts.values()]
        sentences = [s.strip() for text in texts if text for s in re.split(r"(?<=[.!?])\s+", text)]
        return list(dict.fromkeys(s for s in sentences if s and "{" not in s))

    def expecting(self, state: FlowState) -> tuple[str, str]:
        """(slot, prompt) the caller's next words should fill, for asrd's priming: the question
        the agent just asked and the words such an answer is made of."""
        node = self.nodes.get(state.node) if state.node else None
        if node is None or state.node == MESSAGE:
            return "", ""
        if state.pending:
            slot = next(iter(state.pending))
            return "yes_no", f"Was that {_text(state.pending[slot], said=True)}? {self._vocabulary('yes_no')}"
        if node.kind is NodeKind.CONFIRM:
            return "yes_no", f"{self._question(state)} {self._vocabulary('yes_no')}"
        slot = self._missing(node, state.slots) if node.kind is NodeKind.COLLECT else None
        if not slot:
            return "", ""
        return slot, f"{self._question(state)} {self._vocabulary(slot)}".strip()

    def _vocabulary(self, slot: str) -> str:
        return self.agent.vocabulary.get(slot, VOCABULARY.get(slot, ""))

    def goal(self, state: FlowState) -> tuple[str, bool, str]:
        """(what the caller came for, whether it was done, why not): the call record's task."""
        intent = self.agent.intent(state.intent)
        if intent is None or not (intent.node or intent.transfer):
            return "", False, ""
        return intent.name, state.reached, "" if state.reached else state.why

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
        if state.pending and node is not None:
            return self._read_back(state, node, u, intent)
        if node is not None and node.kind is NodeKind.COLLECT:
            return self._collect(state, node, u, intent)
        if node is not None and node.kind is NodeKind.CONFIRM:
            return self._confirm(state, node, u, intent)
        return self._listening(replace(state, node=None), u, intent)

    def on_tool_result(self, state: FlowState, result) -> tuple[FlowState, list[Action]]:
        """A tool's answer, told as it is: a taken slot is "taken", a refused value is asked for
        again by name, a system that does not answer is said so and leads to a person."""
        node = self.nodes.get(state.node) if state.node else None
        if node is None or node.kind is not NodeKind.TOOL:
            return state, []  # a late answer for a node we have left
        data = getattr(result, "data", None)
        if getattr(result, "ok", False):
            state = replace(state, result=data if isinstance(data, dict) else {"value": data},
                            reached=state.reached or node.completes, why="" if node.completes else state.why)
            if node.on_empty and _empty(data):
                return self._enter(state, node.on_empty)
            said = [Say(render(node.say_ok, state.slots, state.result))] if node.say_ok else []
            state, actions = self._enter(state, node.next)
            return state, said + actions
        http_status = getattr(result, "http_status", None) or 0
        if http_status in (400, 422):
            slot = self._refused_slot(node, getattr(result, "error", ""))
            asker = self._collector_for(slot, node.id) if slot else None
            if asker is not None:
                state = replace(state, slots={k: v for k, v in state.slots.items() if k != slot},
                                why=f"{node.tool} refused the {slot}")
                state, actions = self._enter(state, asker, resume=True)
                label = _PART_NAMES.get(slot, slot.replace("_", " "))
                return state, [Say(f"I'm sorry, the booking system didn't accept {label}.")] + actions
        if http_status == 409 and state.slots.get("date") and state.slots.get("time"):
            state = replace(state, taken=[*state.taken, f'{state.slots["date"]} {state.slots["time"]}'])
        if node.on_reject and http_status in (404, 409):
            return self._enter(replace(state, why=f"{node.tool}: {http_status}"), node.on_reject)
        apology = render(node.say_error, state.slots, state.result) or DEFAULT_TOOL_APOLOGY
        state = replace(state, why=f"tool failure: {node.tool} ({getattr(result, 'status', 'error')}"
                                   f"{f' {http_status}' if http_status else ''})")
        if node.on_error and node.on_error != ESCALATE:
            return self._enter(state, node.on_error)
        if node.on_error == ESCALATE or self.esc.on_tool_failure:
            return self._escalate(state, f"{node.tool} failed", apology=apology)
        return replace(state, node=None), [Say(f"{apology} Is there anything else I can help with?")]

    def on_no_input(self, state: FlowState) -> tuple[FlowState, list[Action]]:
        n = state.reprompts + 1
        if n > self.agent.turns.max_reprompts:
            return replace(state, node=None, reprompts=n, why=state.why or "caller went silent"), [
                Say(render(self.agent.goodbye, state.slots)), Hangup("no-input")]
        question = self._question(state)  # (a number half said is said again whole after this)
        return replace(state, reprompts=n, digits=""), [Say(f"{self.agent.turns.reprompt} {question}".strip())]

    def on_transfer_failed(self, state: FlowState, status: int = 0) -> tuple[FlowState, list[Action]]:
        """Nobody took the call (busy, no answer): it is ours again; offer to take a message."""
        return self._offer_message(replace(state, transfer_failed=True, why=f"transfer failed ({status})"))

    # -- the steps --------------------------------------------------------------------------------
    def _listening(self, state: FlowState, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        if _declines(u, intent):  # "No." to "Is there anything else I can help with?": done
            return replace(self._understood(state), node=None), [Say(render(self.agent.goodbye, state.slots)),
                                                                 Hangup("goodbye")]
        if intent is not None and intent.node and _asks_about(u):
            intent = None  # "How much does a cleaning cost?" is a question, not a booking
        entry = self.agent.answer(getattr(u, "knowledge_id", None))
        if intent is not None and intent.node and entry is not None \
                and getattr(u, "knowledge_score", 0.0) >= getattr(u, "intent_score", 1.0):
            intent = None  # "I have a dental emergency, I broke a tooth": the emergency answer, not a booking
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
        state = replace(state, intent=intent.name, reached=False, why="", pending={}, which_part=False)
        if intent.transfer:
            return self._transfer(state, intent.transfer, f"asked for {intent.transfer.replace('_', ' ')}",
                                  say="One moment, I'll put you through.")
        fresh = {k: v for k, v in state.slots.items() if k == CALLER_SLOT}
        state = replace(state, slots=fresh, result={})
        offered, problems, pending = self._checked(state, _slots(u), u)
        state, actions = self._enter(replace(state, pending=pending), intent.node, offered=offered)
        if state.pending:  # a value read back before the flow goes on, counted as any question
            state, more = self._ask(state, " ".join(problems))
            return state, actions + more
        return self._prefixed(state, actions, problems)

    def _collect(self, state: FlowState, node: Node, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        if self._missing(node, state.slots) == "phone" and (group := _digit_group(u)):
            digits = state.digits + group  # a number said in groups, each cut off by a pause
            if len(digits) >= 10 or (len(digits) >= 7 and len(group) >= 4):
                u = replace(u, slots={**_slots(u), "phone": digits})
                state = replace(state, digits="")
            else:
                return replace(self._understood(state), digits=digits), []  # listening for the rest
        if _wh_question(u) and self.agent.answer(getattr(u, "knowledge_id", None)) is not None:
            return self._aside(state, u, intent)  # "What time do you close on Fridays?": asked, not answered
        given = self._fill(node, state, u)
        if (again := self._taken_again(state, given)) is not None:
            return self._ask(self._understood(state), again)
        filled, problems, pending = self._checked(state, given, u)
        if intent is not None and intent.name != state.intent and not intent.knowledge and self._changes_mind(u):
            return self._route(state, intent, u)  # "actually, can I cancel instead?"
        if filled or pending:
            state = self._understood(replace(state, slots={**state.slots, **filled}, pending=pending))
            state, actions = self._enter(state, node.id, resume=True)
            if state.pending:
                state, more = self._ask(state, " ".join(problems))
                return state, actions + more
            return self._prefixed(state, actions, problems)
        if problems:
            return self._prefixed(*self._ask(state, self._question(state)), problems)
        if intent is not None and intent.name != state.intent and not intent.knowledge:
            return self._route(state, intent, u)
        if intent is not None and intent.name == state.intent:
            return self._ask(state, self._question(state))  # "I want to book" again: just ask
        if getattr(u, "backchannel", False):  # "Great." after an aside's answer: the question, no strike
            return self._ask(state, self._question(state), repeat_ok=True)
        return self._aside(state, u, intent)

    def _confirm(self, state: FlowState, node: Node, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        told = [k for k in self._confirmed_slots(node) if k in state.slots]
        given = dict(_slots(u))
        if "time" in told and _MAKE_IT.search(u.text or ""):
            given = _with_hour(given)  # "make it eleven"
        corrections = {k: v for k, v in given.items() if k in told and k != CALLER_SLOT and v != state.slots.get(k)}
        corrections, problems, pending = self._checked(state, corrections, u)
        if pending:  # a corrected value read back first ("Did you mean one p.m.?")
            state = replace(state, slots={**state.slots, **corrections}, pending=pending, which_part=False)
            return self._ask(state, problems[-1], prefix=" ".join(problems[:-1]))
        if corrections:  # "no, Friday" or "yes but at four": apply it and confirm again
            state = self._understood(replace(state, slots={**state.slots, **corrections}, which_part=False))
            return self._prefixed(*self._ask(state, render(node.say, state.slots, state.result)), problems)
        if problems:
            return self._prefixed(*self._ask(state, render(node.say, state.slots, state.result)), problems)
        answer = getattr(u, "yes_no", None)
        restated = {k: v for k, v in given.items() if k in told}
        if answer is None and restated and all(state.slots.get(k) == v for k, v in restated.items()):
            answer = "yes"  # "At ten a.m., please." to "... at ten a.m. Shall I book it?": the same, so yes
        named = _named_slots(u.text, told)
        if named and (answer == "no" or _WRONG.search(u.text or "") or state.which_part):  # "the time's wrong"
            if all(k in given for k in named):  # "the name is Emma Brown": it is said, confirm it again
                state = self._understood(replace(state, which_part=False,
                                                 slots={**state.slots, **{k: given[k] for k in named}}))
                return self._ask(state, render(node.say, state.slots, state.result))
            return self._change(state, node, named)
        if intent is not None and intent.name != state.intent and not intent.knowledge and intent.node:
            return self._route(state, intent, u)  # changed their mind: "actually, cancel it instead"
        if answer == "yes":
            return self._enter(self._understood(replace(state, which_part=False)), node.yes)
        if answer == "no":
            if not state.which_part and len(told) > 1:  # a bare no: which part is wrong?
                parts = [_PART_NAMES.get(k, k) for k in told if k in _PART_NAMES]
                which = ", ".join(parts[:-1]) + f", or {parts[-1]}" if len(parts) > 1 else parts[0]
                state = replace(self._understood(state), which_part=True)
                return self._ask(state, f"Which part should I change: {which}?")
            why = f"{WITHDRAWN}: said no at {node.id}" if self._ends(node.no) else f"caller said no ({node.id})"
            return self._enter(self._understood(replace(state, which_part=False, why=why)), node.no)
        return self._aside(state, u, intent)

    def _change(self, state: FlowState, node: Node, named: list[str]) -> tuple[FlowState, list[Action]]:
        """Forget the slots the caller says are wrong, keep the rest, and ask for those again."""
        asker = self._collector_for(named[0], node.id)
        slots = {k: v for k, v in state.slots.items() if k not in named}
        if asker is None:
            return self._enter(self._understood(replace(state, which_part=False, slots=slots)), node.no)
        # Asked again, and counted: a value corrected and misheard again and again (a name the
        # recogniser cannot get) reaches escalation.max_repeats and the way out, not a loop.
        state = self._understood(replace(state, which_part=False, slots=slots))
        state, actions = self._enter(state, asker, resume=True)
        handed_on = any(isinstance(a, (Transfer, TakeMessage)) for a in actions)
        return state, ([] if handed_on else [Say("No problem.")]) + actions

    def _read_back(self, state: FlowState, node: Node, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        """The caller's answer to "Was that ten a.m.?" / "Did you mean one p.m.?"."""
        pending, state = state.pending, replace(state, pending={})
        answer = getattr(u, "yes_no", None)
        said = self._fill(node, replace(state, slots={k: v for k, v in state.slots.items() if k not in pending}), u) \
            if node.kind is NodeKind.COLLECT else dict(_slots(u))
        if "time" in pending:
            said = _with_hour(said)  # "make it eleven" again
        if said and all(said.get(k) == v for k, v in pending.items()):
            answer = "yes"  # the same value said again ("Ten in the morning."): that is a yes
        elif _slots(u) and answer != "no" and not any(k in pending for k in _slots(u)) \
                and not (pending.keys() == {"time"} and "number" in _slots(u)):
            # the caller went on to the next thing ("My number is ..."): the read-back stood
            return self.on_utterance(replace(state, slots={**state.slots, **pending}), u)
        elif _slots(u) and (answer != "yes" or any(k in pending for k in _slots(u))):
            return self.on_utterance(state, u)  # a new value instead: that one
        if answer == "yes":
            state = self._understood(replace(state, slots={**state.slots, **pending}))
            if node.kind is NodeKind.CONFIRM:
                return self._ask(state, render(node.say, state.slots, state.result))
            return self._enter(state, node.id, resume=True)
        if answer == "no":
            return self._ask(replace(state, why=f"misheard {', '.join(pending)}"), self._question(state))
        return self.on_utterance(state, u)

    def _aside(self, state: FlowState, u, intent: Intent | None) -> tuple[FlowState, list[Action]]:
        """Mid-flow, a question we know the answer to gets it, then the flow's question again. An
        answer that fits nothing ("at an AM", a misheard "at ten AM") is no question: the flow's
        question again, not the nearest piece of knowledge."""
        entry = self.agent.answer(intent.knowledge if intent is not None else getattr(u, "knowledge_id", None))
        if entry is not None and _is_question(getattr(u, "text", "")):
            state, actions = self._ask(self._understood(state), self._question(state), repeat_ok=True)
            return state, [Say(entry.answer)] + actions
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
            match node.kind:
                case NodeKind.COLLECT:
                    if not resume:
                        slots = {k: v for k, v in slots.items()
                                 if not (node.reset and k in node.slots and k not in node.keep)}
                        for slot, template in node.defaults.items():
                            value = render_arg(template, slots, result)
                            if not slots.get(slot) and value and _valid_default(slot, value):
                                slots[slot] = value
                        # what the caller offered that this node or a later one uses ("under the name Peter Novak")
                        slots.update({k: v for k, v in (offered or {}).items() if k in node.slots or k in self.collected})
                    state = replace(state, slots=slots)
                    if state.pending:  # its read-back question goes out with the reason (see _checked)
                        return state, actions
                    if self._missing(node, slots):
                        state, more = self._ask(state, self._question(state))
                        return state, actions + more
                    node_id, resume = node.next, False
                case NodeKind.CONFIRM:
                    state, more = self._ask(replace(state, which_part=False), render(node.say, slots, result))
                    return state, actions + more
                case NodeKind.TOOL:
                    args = {k: render_arg(v, slots, result) for k, v in node.args.items()}
                    return state, actions + [CallTool(node.tool, args)]
                case NodeKind.TRANSFER:
                    state, more = self._transfer(state, node.target, f"flow {node_id}",
                                                 say=render(node.say, slots, result))
                    return state, actions + more
                case NodeKind.END:
                    text = render(node.say, slots, result) or render(self.agent.goodbye, slots)
                    return replace(state, node=None), actions + [Say(text), Hangup("completed")]
                case NodeKind.LLM:
                    actions.append(AskLlm(render(node.instructions, slots, result)))
                    node_id = node.next
                case NodeKind.SAY:
                    actions.append(Say(render(node.say, slots, result)))
                    node_id = node.next
        return replace(state, node=None), actions  # a loop of nodes that never wait: stop here

    # -- asking, and never a third time the same -------------------------------------------------------
    def _ask(self, state: FlowState, question: str, *, prefix: str = "",
             repeat_ok: bool = False) -> tuple[FlowState, list[Action]]:
        """Ask ``question``; the same words asked ``escalation.max_repeats`` times already get the
        agent's way out instead (a person with the context so far, or a message), never a loop.
        ``repeat_ok``: the caller asked something else in between (an aside); it still counts."""
        if not question:
            return state, [Say(prefix)] if prefix else []
        times = state.asked.get(question, 0)
        if repeat_ok:  # asked again after the caller's own aside: not a question that went unanswered
            return state, [Say(f"{prefix} {question}".strip())]
        if times >= self.esc.max_repeats:
            return self._escalate(replace(state, why=state.why or "the same question went unanswered"),
                                  f"asked the same question {times} times",
                                  apology="I'm sorry, I'm not getting this right.")
        state = replace(state, asked={**state.asked, question: times + 1})
        return state, [Say(f"{prefix} {question}".strip())]

    @staticmethod
    def _prefixed(state: FlowState, actions: list[Action], problems: list[str]) -> tuple[FlowState, list[Action]]:
        """Why a value was not taken, said before what comes next ("We're closed on Sundays.")."""
        if not problems:
            return state, actions
        return state, [Say(" ".join(problems))] + actions

    # -- slots ------------------------------------------------------------------------------------
    @staticmethod
    def _missing(node: Node, slots: dict) -> str | None:
        return next((s for s in node.slots if slots.get(s) in (None, "")), None)

    def _fill(self, node: Node, state: FlowState, u) -> dict:
        """The node's slots this utterance gives; the slot being asked for may take the words."""
        given = {k: v for k, v in _slots(u).items() if k in node.slots}
        asked = self._missing(node, state.slots)
        if asked == "time" and "time" not in given and len(u.text.split()) <= 4:
            given = {**given, **{k: v for k, v in _with_hour(_slots(u)).items() if k == "time"}}  # "eleven", "at two"
        if asked == "time" and "time" not in given and self.hours.known and (edge := _EDGE.search(u.text or "")):
            day = _date(given.get("date") or state.slots.get("date") or "")
            starts = self.hours.slots(day) if day else []
            if starts:  # "as early as possible": the day's first appointment; "latest": its last
                given["time"] = starts[0] if edge.group("early") else starts[-1]
        if given or asked is None or getattr(u, "yes_no", None) or getattr(u, "backchannel", False) \
                or getattr(u, "intent", None) or getattr(u, "knowledge_id", None):
            return given  # words that mean something else are no answer
        text = u.text.strip().strip(".!?,").strip()
        if asked == "name":  # of the recogniser's readings, the one most like a name ("Ploy" or "Chloe")
            heard = _said_name(u.text)
            if not 0 < len(heard.split()) <= 4:
                return {}  # a question or a sentence, not a name (whatever a shorter reading says)
            size = len(heard.split())
            others = [n for n in map(_said_name, getattr(u, "readings", ()))
                      if 0 < len(n.split()) <= 4 and abs(len(n.split()) - size) <= 1]
            return {"name": likeliest([heard, *others])}
        if asked not in ENTITY_SLOTS and text:
            return {asked: text}  # a free-text slot (a reason, a message): the words themselves
        return {}

    def _checked(self, state: FlowState, values: dict, u) -> tuple[dict, list[str], dict]:
        """``values`` held to the agent's [hours] before anything is confirmed. A date in the past
        or on a closed day is dropped with the reason; a time out of hours takes the recogniser's
        other reading that fits, else is read back as the likeliest meant time ("We're not open
        at one a.m. Did you mean one p.m.?"); a value heard unsurely is read back on its own.
        Returns the values to take, what to tell the caller, and the values read back."""
        values, problems, pending = dict(values), [], {}
        heard_unsure = getattr(u, "unsure", frozenset())
        readings = getattr(u, "alternatives", ()) or ()

        def doubted(k: str) -> bool:
            """Low word confidence alone is no doubt (a primed decode scores the words it was primed
            with near 0: "ten" 0.02, "two" 0.00 when heard right); that and the recogniser's other
            reading giving the slot another value is."""
            if not (k in heard_unsure or (k == "time" and "number" in heard_unsure and "time" not in _slots(u))):
                return False
            return any((other := _with_hour(reading).get(k)) is not None and other != values[k]
                       for reading in readings)

        unsure = [k for k in values if doubted(k)]
        if not self.hours.known or not values:
            if unsure:
                pending = {k: values.pop(k) for k in unsure}
                problems.append(f"Was that {' '.join(_text(v, said=True) for v in pending.values())}?")
            return values, problems, pending
        today = getattr(u, "today", None)
        alternatives = getattr(u, "alternatives", ()) or ()
        if "date" in values:
            day = _date(values["date"])
            problem = self.hours.date_problem(day, today or day) if day else None
            if problem:
                better = next((a["date"] for a in alternatives if "date" in a and (d := _date(a["date"]))
                               and self.hours.date_problem(d, today or d) is None), None)
                if better:
                    values["date"] = better
                else:
                    del values["date"]
                    problems.append(f"{problem} We're open {self.hours.describe()}.")
        if "time" in values:
            day = _date(values.get("date") or state.slots.get("date") or "")
            problem = self.hours.time_problem(values["time"], day)
            if problem:
                better = next((a["time"] for a in alternatives if "time" in a
                               and self.hours.time_problem(a["time"], day) is None), None)
                if better:
                    values["time"] = better
                else:
                    heard = values.pop("time")
                    guess = self.hours.suggest(heard, day)
                    if guess:
                        pending = {"time": guess}
                        problems.append(f"{problem} Did you mean {spoken_time(guess)}?")
                    else:
                        problems.append(problem)
        unsure = [k for k in unsure if k in values]
        if unsure and not problems:
            pending = {k: values.pop(k) for k in unsure}
            problems.append(f"Was that {' '.join(_text(v, said=True) for v in pending.values())}?")
        return values, problems, pending

    @staticmethod
    def _taken_again(state: FlowState, given: dict) -> str | None:
        """The time the booking system refused (409) asked for again: said so, with the free
        times it offered if any, as a question of its own (not the node's, asked once more)."""
        day = given.get("date") or state.slots.get("date")
        if "time" not in given or f'{day} {given["time"]}' not in state.taken:
            return None
        free = [t for t in (state.result.get("slots") or []) if isinstance(t, str)] \
            if state.result.get("date") == day else []
        listed = _text(free, said=True)
        offer = f" {listed[:1].upper()}{listed[1:]} {'are' if len(free) > 1 else 'is'} free." if free else ""
        return (f"I'm sorry, {spoken_time(given['time'])} is taken that day.{offer} "
                f"Which of those would suit you, or would another day be better?" if offer else
                f"I'm sorry, {spoken_time(given['time'])} is taken that day. Would another time or day suit you?")

    def _collector_for(self, slot: str, near: str) -> str | None:
        """The collect node that asks for ``slot`` on the way to node ``near``, else any."""
        askers = [nid for nid, n in self.nodes.items() if n.kind is NodeKind.COLLECT and slot in n.slots]
        for nid in askers:
            seen, here = set(), self.nodes[nid].next
            while here and here not in seen and here in self.nodes:
                if here == near:
                    return nid
                seen.add(here)
                here = self.nodes[here].next or self.nodes[here].yes
        return askers[0] if askers else None

    def _confirmed_slots(self, node: Node) -> list[str]:
        return [name for name in PLACEHOLDER.findall(node.say) if "." not in name and name != CALLER_SLOT]

    @staticmethod
    def _refused_slot(node: Node, error: str) -> str | None:
        """The slot behind the argument a tool's 400 names ("phone must be a phone number")."""
        low = (error or "").lower()
        if ": http 4" in low:
            low = low.split(": http 4", 1)[1]
        for arg, template in node.args.items():
            m = PLACEHOLDER.fullmatch(str(template).strip())
            if m and "." not in m.group(1) and re.search(rf"\b{re.escape(arg.lower())}\b", low):
                return m.group(1)
        return None

    def _ends(self, node_id: str) -> bool:
        """Does the flow end there without another question (a goodbye or "anything else?")?"""
        seen = set()
        while node_id and node_id not in seen and node_id in self.nodes:
            seen.add(node_id)
            node = self.nodes[node_id]
            if node.kind not in (NodeKind.SAY, NodeKind.LLM):
                return node.kind is NodeKind.END
            node_id = node.next
        return True

    @staticmethod
    def _changes_mind(u) -> bool:
        return bool(_MAKE_IT.search(getattr(u, "text", "") or "")) or getattr(u, "intent_score", 0.0) >= 0.7

    def _question(self, state: FlowState) -> str:
        """What the current node asks (the re-prompt repeats it)."""
        if state.node == MESSAGE:
            return "Would you like to leave a message?"
        node = self.nodes.get(state.node) if state.node else None
        if node is None:
            return ""
        if node.kind is NodeKind.COLLECT:
            slot = self._missing(node, state.slots)
            return render(node.prompts.get(slot, ""), state.slots, state.result) if slot else ""
        if node.kind is NodeKind.CONFIRM:
            return render(node.say, state.slots, state.result)
        return ""

    # -- understanding, escalation ------------------------------------------------------------------
    @staticmethod
    def _understood(state: FlowState) -> FlowState:
        return replace(state, misunderstandings=0) if state.misunderstandings else state

    def _not_understood(self, state: FlowState, question: str) -> tuple[FlowState, list[Action]]:
        state = replace(state, misunderstandings=state.misunderstandings + 1)
        if state.misunderstandings >= self.esc.max_misunderstandings:
            return self._escalate(replace(state, why=state.why or "caller not understood"),
                                  f"not understood {state.misunderstandings} times",
                                  apology="I'm sorry, I'm having trouble understanding.")
        return self._ask(state, question, prefix=NOT_CAUGHT)

    def _hands_off(self, intent: Intent) -> bool:
        return bool(intent.transfer) or (intent.node in self.nodes and self.nodes[intent.node].kind is NodeKind.TRANSFER)

    def _asks_for_person(self, text: str) -> bool:
        words = " " + re.sub(r"[^a-z0-9']+", " ", text.lower()) + " "
        return any(f" {k} " in words for k in self.keywords)

    def _escalate(self, state: FlowState, reason: str, *, apology: str = "") -> tuple[FlowState, list[Action]]:
        if self.agent.target(self.esc.target) is None or state.transfer_failed:
            state, actions = self._offer_message(state)
            return state, ([Say(apology)] if apology else []) + actions
        return self._transfer(state, self.esc.target, reason, say=f"{apology} {CONNECTING}".strip())

    def _transfer(self, state: FlowState, target_name: str, reason: str, *, say: str = "") -> tuple[FlowState, list[Action]]:
        target = self.agent.target(target_name)
        context = {"intent": state.intent or "", "slots": self._told(state), "reason": reason,
                   "caller": state.slots.get(CALLER_SLOT, ""), "node": state.node or ""}
        actions: list[Action] = [Say(say)] if say else []
        state = replace(state, node=None, misunderstandings=0, pending={}, which_part=False)
        return state, actions + [Transfer(target.name, target.uri, self.summary(state, reason), context,
                                            target.context_headers)]

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
        state = replace(state, node=MESSAGE, misunderstandings=0, pending={}, which_part=False)
        return state, [Say(render(self.esc.message_if_unavailable, state.slots)), TakeMessage()]

    def _message(self, state: FlowState, u) -> tuple[FlowState, list[Action]]:
        short = len(u.text.split()) <= 3
        answer = getattr(u, "yes_no", None)
        if short and answer == "no":
            return replace(state, node=None), [Say(render(self.agent.goodbye, state.slots)), Hangup("no-message")]
        if (short and answer == "yes") or getattr(u, "backchannel", False) or not u.text.strip() \
                or _NO_MESSAGE.fullmatch(u.text.strip()):  # "Yes, I'm still here." is not the message
            return state, [Say("Please go ahead, I'm listening.")]
        if answer == "no" or self._asks_for_person(u.text):  # "No, I want to talk to a real person"
            if not state.transfer_failed and self.agent.target(self.esc.target) is not None:
                return self._transfer(state, self.esc.target, "asked for a person instead of leaving a message",
                                      say=CONNECTING)
            question = ("I'm sorry, nobody can come to the phone right now. I can take a message for them, or you "
                        "can call back during opening hours. What would you like to do?")
            if state.asked.get(question, 0) >= self.esc.max_repeats:  # no third time: a polite end
                return replace(state, node=None, why=state.why or "nobody available"), [
                    Say("I'm sorry I couldn't put you through. Please call back during opening hours. "
                        + render(self.agent.goodbye, state.slots)), Hangup("no-message")]
            return replace(state, asked={**state.asked, question: state.asked.get(question, 0) + 1}), [Say(question)]
        summary = self.summary(state, "left a message")
        slots = {**state.slots, "message": u.text.strip()}
        state = replace(state, node=None, slots=slots)
        return state, [TakeMessage(message=u.text.strip(), summary=summary),
                       Say("Thank you, I'll make sure they get your message. " + render(self.agent.goodbye, slots)),
                       Hangup("message-taken")]


# Answers to "Can I take a message?" (or "Are you still there?") that are not the message itself.
_NO_MESSAGE = re.compile(r"(?:(?:yes|yeah|yep|sure|okay|ok|hello|hi|um|uh)\W*)*"
                         r"(?:(?:i'm|i am) (?:still )?(?:here|listening)|still here|(?:yes|yeah|sure|okay|ok),? "
                         r"(?:please|go ahead|i'd like (?:that|to)|that'd be (?:good|great|fine)|that's fine))\W*",
                         re.I)


def _slots(u) -> dict:
    return {k: v for k, v in (getattr(u, "slots", None) or {}).items() if v not in (None, "")}


def _digit_group(u) -> str:
    """The digits of an utterance made of nothing else ("555.", "five five five", "201, 33")."""
    text = to_digits(getattr(u, "text", "") or "").strip()
    if not re.fullmatch(r"\+?[\d][\d\s,.\-()]*", text):
        return ""
    return re.sub(r"\D", "", text)


def _date(value: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _valid_default(slot: str, value: Any) -> bool:
    """A default that fills an entity slot must be one: a caller id of "anonymous" or a SIP
    user name ("talk") is no phone number, so the caller is asked instead."""
    if slot == "phone":
        digits = re.sub(r"[\s().+-]", "", str(value))
        return digits.isdigit() and 7 <= len(digits) <= 15
    return True
