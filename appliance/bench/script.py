"""Scripted callers as data: the format of `appliancectl bench conversations`' caller files.

A caller is a TOML file (the shipped ones: ``appliance/bench/conversations/*.toml``), so an
admin can write the conversations their own callers have, and the same file can later serve
as an agent test: what the caller says, and what must be true once the call is over.

    name = "book-correct-time"        # default: the file name without .toml
    goal = "book"                     # book | move | cancel | transfer | answer | message
    description = "corrects the time at the confirmation"
    voice = "quick"                   # plain | quick | slow | low | high, or {length_scale = 1.2, pitch = 1.05}
    opening = ["Hi, I'd like to book a check-up.", "I want to book an appointment."]
    max_turns = 14                    # caller lines before it gives up and hangs up
    timeout_s = 240                   # the whole call

    [[seed]]                          # in the booking system before the call (for move / cancel)
    id = "checkup"                    # how [expect] refers to it
    name = "Maria Garcia"
    phone = "caller"                  # the calling number (default), or digits: "555 123 4567"
    date = "next wednesday"
    time = "14:00"                    # a free slot the booking system takes (the example's: weekdays
                                      # 09:00-16:30, on the hour or half hour); one it refuses is
                                      # reported as the bench's error, not the agent's

    [[reply]]                         # first rule that applies wins; file order
    when = ["shall i book", "11"]     # patterns (Python regex, any case); all must match what the agent just said
    unless = "10:00"                  # optional: not when this matches
    say = ["Yes, please."]            # one phrasing per time the rule fires, the next one each time, round
    in = ["corrected"]                # optional: only in these states (the caller starts in "start")
    then = "done"                     # optional: the state after the rule fires
    # hangup = true                   # hang up instead of saying anything; say = [] keeps listening

    [expect]                          # all must hold after the call
    booked = {name = "Maria Garcia", date = "next tuesday", time = "11:00"}  # a new appointment like this
    moved = {seed = "checkup", date = "friday", time = "10:30"}               # the seeded one, now here
    cancelled = ["checkup"]           # seeded appointments that must be gone
    kept = ["checkup"]                # seeded appointments that must be unchanged
    transfer = "front_desk"           # a transfer to this target was requested; false: none was
    heard = ["saturday", "9 am|nine"] # one agent turn matches all these patterns (a list of such
                                      # lists: each list by some turn, e.g. [["saturday"], ["parking"]])
    message = ["call me back"]        # a message was taken, matching these patterns
    outcome = "completed"             # the call record's outcome (or a list of accepted ones)

The opening is said after the agent's first turn (the greeting). Each later caller line
answers everything the agent said since the caller last spoke: the first rule whose ``when``
patterns all match (and ``unless`` does not, and the state is one of ``in``) says its next
phrasing: asked the same thing again, a person says it another way, because the same words
into the same recogniser are misheard the same way. Then come the built-in rules (``defaults =
false`` drops them): "goodbye" hangs up, "anything else" gets "No, that's all, thank you.
Goodbye.", "one moment" keeps listening, "are you still there?" gets "Yes, I'm still here.".
When nothing applies ("Sorry?") the caller says its last line again, in its next phrasing.

Dates are today-relative so a file never goes stale, with the agent's own meaning (weeks start
on Monday): ``tuesday`` the next Tuesday after today (1-7 days), ``this tuesday`` today
included, ``next tuesday`` / ``tuesday next week`` the Tuesday of next week, ``tuesday after
next`` a week later, ``today``, ``tomorrow``, ``in 3 days``, ``+3``, or ``2026-12-01``. Each goal
needs its check: book ``booked``, move ``moved`` (or ``kept``: a caller who changes their mind),
cancel ``cancelled`` (or ``kept``), transfer ``transfer``, answer ``heard``, message ``message``;
a book/move/cancel/answer caller that is transferred has failed unless its ``transfer`` says
otherwise.

A file that breaks these rules is refused with its path and the key: ``ScriptError``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOALS = ("book", "move", "cancel", "transfer", "answer", "message")
DEFAULT_DIR = Path(__file__).resolve().parent / "conversations"
START = "start"


class ScriptError(ValueError):
    """A caller file that cannot be used: names the file and the key, so the admin can fix it."""

    def __init__(self, path: str | Path, key: str, problem: str):
        super().__init__(f"{path}: {key}: {problem}" if key else f"{path}: {problem}")
        self.path, self.key, self.problem = str(path), key, problem


@dataclass(frozen=True)
class Voice:
    """How the caller's Piper voice is changed: ``length_scale`` > 1 speaks slower (Piper's own
    knob); ``pitch`` > 1 is higher (and as much quicker: the audio is resampled), so callers
    differ from each other and from the agent, which speaks with the same Piper voice."""

    length_scale: float = 1.0
    pitch: float = 1.12

    def as_dict(self) -> dict[str, float]:
        return {"length_scale": self.length_scale, "pitch": self.pitch}


VOICES = {"plain": Voice(1.0, 1.12), "quick": Voice(0.82, 1.08), "slow": Voice(1.3, 1.12),
          "low": Voice(1.05, 0.94), "high": Voice(0.95, 1.25)}


@dataclass(frozen=True)
class Rule:
    """When the agent says something matching ``when`` (all) and not ``unless``: say ``say``'s
    next phrasing (none: keep listening), or hang up; ``then`` is the state after it."""

    when: tuple[re.Pattern[str], ...]
    say: tuple[str, ...] = ()
    unless: tuple[re.Pattern[str], ...] = ()
    states: tuple[str, ...] = ()  # empty: in any state
    then: str | None = None
    hangup: bool = False

    def applies(self, agent: str, state: str) -> bool:
        return ((not self.states or state in self.states) and all(p.search(agent) for p in self.when)
                and not any(p.search(agent) for p in self.unless))


def _rule(when: str, say: tuple[str, ...] = (), hangup: bool = False) -> Rule:
    return Rule(when=(re.compile(when, re.I),), say=say, hangup=hangup)


DEFAULT_RULES = (
    _rule(r"goodbye|good bye|have a (great|good|nice) day", hangup=True),
    _rule(r"anything else", ("No, that's all, thank you. Goodbye.", "No thanks, that's everything. Bye.")),
    _rule(r"one moment|just a moment|bear with me"),
    _rule(r"are you still there", ("Yes, I'm still here.", "Yes, I'm here.")),
)


@dataclass(frozen=True)
class Seed:
    """An appointment in the booking system before the call; ``phone`` "caller" is the number
    the call comes from (the agent's flows look appointments up by it first)."""

    id: str
    name: str
    date: str
    time: str
    phone: str = "caller"


@dataclass(frozen=True)
class Booked:
    name: str | None = None
    date: str | None = None
    time: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Moved:
    seed: str
    date: str | None = None
    time: str | None = None


@dataclass(frozen=True)
class Expectation:
    """What must be true after the call (every field that is set)."""

    booked: Booked | None = None
    moved: Moved | None = None
    cancelled: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    transfer: str | bool | None = None  # a target; False: no transfer; None: not checked
    heard: tuple[tuple[re.Pattern[str], ...], ...] = ()  # each group matched by one agent turn
    message: tuple[re.Pattern[str], ...] | None = None
    outcome: tuple[str, ...] = ()


@dataclass(frozen=True)
class Script:
    name: str
    path: str
    goal: str
    opening: tuple[str, ...]
    expect: Expectation
    rules: tuple[Rule, ...] = ()
    seeds: tuple[Seed, ...] = ()
    voice: Voice = field(default_factory=Voice)
    voice_name: str = "plain"
    description: str = ""
    max_turns: int = 14
    timeout_s: float = 240.0
    defaults: bool = True

    def lines(self, first_only: bool = False) -> list[str]:
        """Every line the caller may say (``first_only``: each rule's first phrasing), to
        synthesise before the call is placed."""
        out = list(self.opening[:1] if first_only else self.opening)
        for rule in self.rules + (DEFAULT_RULES if self.defaults else ()):
            out += rule.say[:1] if first_only else rule.say
        return list(dict.fromkeys(out))


# -- the caller ----------------------------------------------------------------------------------
class ScriptedCaller:
    """``caller(agent_text)`` -> a line to say, ``""`` to keep listening, ``None`` to hang up
    (softphone.converse's protocol); pure, so its choices are tested without a call."""

    def __init__(self, script: Script):
        self.script = script
        self.rules = script.rules + (DEFAULT_RULES if script.defaults else ())
        self.state = START
        self.heard = 0
        self.fired: dict[int, int] = {}  # rule index (-1: the opening) -> times it spoke
        self.last: int | None = None     # the rule that spoke last: said again when not understood
        self.said: list[str] = []

    def __call__(self, agent: str) -> str | None:
        self.heard += 1
        if self.heard == 1:
            return self._speak(-1)
        for i, rule in enumerate(self.rules):
            if rule.applies(agent, self.state):
                if rule.then:
                    self.state = rule.then
                if rule.hangup:
                    return None
                return self._speak(i) if rule.say else ""
        return self._speak(self.last) if self.last is not None else ""

    def _speak(self, index: int) -> str:
        ways = self.script.opening if index == -1 else self.rules[index].say
        n = self.fired.get(index, 0)
        self.fired[index] = n + 1
        self.last = index
        line = ways[n % len(ways)]
        self.said.append(line)
        return line


# -- dates ---------------------------------------------------------------------------------------
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DATE = re.compile(rf"""^(?:(?P<iso>\d{{4}}-\d{{2}}-\d{{2}})|(?P<word>today|tomorrow)|in\s+(?P<n>\d+)\s+days?
                    |\+(?P<plus>\d+)|(?:(?P<mod>this|next)\s+)?(?P<wd>{'|'.join(_WEEKDAYS)})
                    (?:\s+(?P<after>next\s+week|after\s+next))?)$""", re.X)
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def resolve_date(expr: str, today: dt.date) -> dt.date:
    """A script's date expression as a date, the way the agent reads the same words."""
    m = _DATE.match(" ".join(expr.lower().split()))
    if m is None:
        raise ValueError(f"{expr!r} is not a date: use a weekday (\"tuesday\", \"next tuesday\"), "
                         "\"tomorrow\", \"in 3 days\" or YYYY-MM-DD")
    g = m.groupdict()
    if g["iso"]:
        return dt.date.fromisoformat(g["iso"])
    if g["word"]:
        return today + dt.timedelta(days=1 if g["word"] == "tomorrow" else 0)
    if g["n"] or g["plus"]:
        return today + dt.timedelta(days=int(g["n"] or g["plus"]))
    wd = _WEEKDAYS.index(g["wd"])
    if g["mod"] == "next" or g["after"]:
        monday_next = today + dt.timedelta(days=7 - today.weekday())
        return monday_next + dt.timedelta(days=wd + (7 if (g["after"] or "").startswith("after") else 0))
    delta = (wd - today.weekday()) % 7
    return today + dt.timedelta(days=delta if g["mod"] == "this" or delta else 7)


# -- loading -------------------------------------------------------------------------------------
_TOP = {"name", "goal", "description", "voice", "opening", "max_turns", "timeout_s", "defaults", "seed", "reply",
        "expect"}
_RULE = {"when", "unless", "say", "in", "then", "hangup"}
_SEED = {"id", "name", "phone", "date", "time"}
_EXPECT = {"booked", "moved", "cancelled", "kept", "transfer", "heard", "message", "outcome"}
_NEEDS = {"book": ("booked",), "move": ("moved", "kept"), "cancel": ("cancelled", "kept"), "transfer": ("transfer",),
          "answer": ("heard",), "message": ("message",)}


class _Reader:
    """Typed access to one file's values, each failure a ScriptError naming the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, problem: str) -> ScriptError:
        return ScriptError(self.path, key, problem)

    def table(self, value: Any, key: str, allowed: set[str]) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            where = f"{key}." if key else ""
            raise self.fail(f"{where}{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def text(self, value: Any, key: str, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(key, f"must be {'a' if empty else 'a non-empty'} string, got {value!r}")
        return value.strip()

    def texts(self, value: Any, key: str, *, empty: bool = False) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or (not items and not empty):
            raise self.fail(key, f"must be a string or a {'' if empty else 'non-empty '}list of strings, got {value!r}")
        return tuple(self.text(v, f"{key}[{i}]") for i, v in enumerate(items))

    def patterns(self, value: Any, key: str) -> tuple[re.Pattern[str], ...]:
        out = []
        for i, text in enumerate(self.texts(value, key)):
            try:
                out.append(re.compile(text, re.I))
            except re.error as exc:
                raise self.fail(f"{key}[{i}]" if isinstance(value, list) else key,
                                f"{text!r} is not a valid pattern: {exc}") from None
        return tuple(out)

    def number(self, value: Any, key: str, lo: float, hi: float, *, integer: bool = False) -> float:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
            raise self.fail(key, f"must be {'an integer' if integer else 'a number'} from {lo:g} to {hi:g}, "
                                 f"got {value!r}")
        return value

    def date(self, value: Any, key: str) -> str:
        text = self.text(value, key)
        try:
            resolve_date(text, dt.date.today())
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        return text

    def time(self, value: Any, key: str) -> str:
        text = self.text(value, key)
        if not _TIME.match(text):
            raise self.fail(key, f"{text!r} is not a time: use HH:MM, 24-hour (\"14:30\")")
        return text


def load_script(path: str | Path) -> Script:
    """One caller file, checked whole; ScriptError names the file and the key at fault."""
    path = Path(path)
    r = _Reader(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(path, "", f"cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(path, "", f"is not valid TOML: {exc}") from None
    r.table(data, "", _TOP)
    for key in ("goal", "opening", "expect"):
        if key not in data:
            raise r.fail(key, "is required")
    goal = r.text(data["goal"], "goal")
    if goal not in GOALS:
        raise r.fail("goal", f"{goal!r} is not one of {', '.join(GOALS)}")
    name = r.text(data.get("name", path.stem), "name")
    voice_name, voice = _voice(r, data.get("voice"), name)

    seeds: list[Seed] = []
    raw_seeds = data.get("seed", [])
    if not isinstance(raw_seeds, list):
        raise r.fail("seed", "must be an array of tables ([[seed]])")
    for i, s in enumerate(raw_seeds):
        key = f"seed[{i}]"
        s = r.table(s, key, _SEED)
        for k in ("id", "name", "date", "time"):
            if k not in s:
                raise r.fail(f"{key}.{k}", "is required")
        seed = Seed(id=r.text(s["id"], f"{key}.id"), name=r.text(s["name"], f"{key}.name"),
                    date=r.date(s["date"], f"{key}.date"), time=r.time(s["time"], f"{key}.time"),
                    phone=r.text(s.get("phone", "caller"), f"{key}.phone"))
        if seed.phone != "caller" and not re.fullmatch(r"\+?[\d\s().-]{3,}", seed.phone):
            raise r.fail(f"{key}.phone", f"{seed.phone!r} is neither \"caller\" nor a phone number")
        if any(x.id == seed.id for x in seeds):
            raise r.fail(f"{key}.id", f"{seed.id!r} is used twice")
        seeds.append(seed)

    rules: list[Rule] = []
    raw_rules = data.get("reply", [])
    if not isinstance(raw_rules, list):
        raise r.fail("reply", "must be an array of tables ([[reply]])")
    for i, x in enumerate(raw_rules):
        key = f"reply[{i}]"
        x = r.table(x, key, _RULE)
        if "when" not in x:
            raise r.fail(f"{key}.when", "is required")
        hangup = x.get("hangup", False)
        if not isinstance(hangup, bool):
            raise r.fail(f"{key}.hangup", f"must be true or false, got {hangup!r}")
        say = r.texts(x.get("say", []), f"{key}.say", empty=True)
        if hangup and say:
            raise r.fail(f"{key}.say", "a rule that hangs up says nothing (drop say or hangup)")
        rules.append(Rule(when=r.patterns(x["when"], f"{key}.when"), say=say,
                          unless=r.patterns(x["unless"], f"{key}.unless") if "unless" in x else (),
                          states=r.texts(x["in"], f"{key}.in") if "in" in x else (),
                          then=r.text(x["then"], f"{key}.then") if "then" in x else None, hangup=hangup))

    expect = _expect(r, data["expect"], goal, {s.id for s in seeds})
    defaults = data.get("defaults", True)
    if not isinstance(defaults, bool):
        raise r.fail("defaults", f"must be true or false, got {defaults!r}")
    return Script(name=name, path=str(path), goal=goal, opening=r.texts(data["opening"], "opening"),
                  expect=expect, rules=tuple(rules), seeds=tuple(seeds), voice=voice, voice_name=voice_name,
                  description=r.text(data.get("description", ""), "description", empty=True),
                  max_turns=int(r.number(data.get("max_turns", 14), "max_turns", 1, 60, integer=True)),
                  timeout_s=float(r.number(data.get("timeout_s", 240), "timeout_s", 10, 1800)), defaults=defaults)


def _voice(r: _Reader, value: Any, name: str) -> tuple[str, Voice]:
    """A named voice, a table of its own, or (absent) one of VOICES picked by the caller's name,
    so a directory of callers spreads over the speeds and pitches the same way every run."""
    if value is None:
        names = sorted(VOICES)
        pick = names[zlib.crc32(name.encode()) % len(names)]
        return pick, VOICES[pick]
    if isinstance(value, str):
        if value not in VOICES:
            raise r.fail("voice", f"{value!r} is not one of {', '.join(sorted(VOICES))} (or a table "
                                  "{length_scale, pitch})")
        return value, VOICES[value]
    v = r.table(value, "voice", {"length_scale", "pitch"})
    voice = Voice(length_scale=float(r.number(v.get("length_scale", 1.0), "voice.length_scale", 0.5, 2.0)),
                  pitch=float(r.number(v.get("pitch", 1.12), "voice.pitch", 0.7, 1.5)))
    return "custom", voice


def _expect(r: _Reader, value: Any, goal: str, seed_ids: set[str]) -> Expectation:
    e = r.table(value, "expect", _EXPECT)
    if not any(k in e for k in _NEEDS[goal]):
        raise r.fail(f"expect.{_NEEDS[goal][0]}", f"is required for goal = \"{goal}\""
                     + (f" (or expect.{_NEEDS[goal][1]})" if len(_NEEDS[goal]) > 1 else ""))

    def seeds(key: str) -> tuple[str, ...]:
        ids = r.texts(e[key], f"expect.{key}")
        for i in ids:
            if i not in seed_ids:
                raise r.fail(f"expect.{key}", f"{i!r} is not the id of a [[seed]] "
                                              f"(ids: {', '.join(sorted(seed_ids)) or 'none'})")
        return ids

    booked = moved = None
    if "booked" in e:
        b = r.table(e["booked"], "expect.booked", {"name", "date", "time", "phone"})
        if not b:
            raise r.fail("expect.booked", "needs at least one of name, date, time, phone")
        booked = Booked(name=r.text(b["name"], "expect.booked.name") if "name" in b else None,
                        date=r.date(b["date"], "expect.booked.date") if "date" in b else None,
                        time=r.time(b["time"], "expect.booked.time") if "time" in b else None,
                        phone=r.text(b["phone"], "expect.booked.phone") if "phone" in b else None)
    if "moved" in e:
        m = r.table(e["moved"], "expect.moved", {"seed", "date", "time"})
        if "seed" not in m:
            raise r.fail("expect.moved.seed", "is required")
        if "date" not in m and "time" not in m:
            raise r.fail("expect.moved", "needs date or time (where the appointment must be now)")
        seed = r.text(m["seed"], "expect.moved.seed")
        if seed not in seed_ids:
            raise r.fail("expect.moved.seed", f"{seed!r} is not the id of a [[seed]] "
                                              f"(ids: {', '.join(sorted(seed_ids)) or 'none'})")
        moved = Moved(seed=seed, date=r.date(m["date"], "expect.moved.date") if "date" in m else None,
                      time=r.time(m["time"], "expect.moved.time") if "time" in m else None)
    transfer: str | bool | None = None
    if "transfer" in e:
        t = e["transfer"]
        if t is True or not isinstance(t, (str, bool)):
            raise r.fail("expect.transfer", f"must be a target name or false, got {t!r}")
        transfer = r.text(t, "expect.transfer") if isinstance(t, str) else False
    elif goal in ("book", "move", "cancel", "answer"):
        transfer = False  # a task the agent should do itself: handing it off is no success
    return Expectation(booked=booked, moved=moved, cancelled=seeds("cancelled") if "cancelled" in e else (),
                  kept=seeds("kept") if "kept" in e else (), transfer=transfer,
                  heard=_heard(r, e["heard"]) if "heard" in e else (),
                  message=r.patterns(e["message"], "expect.message") if "message" in e else None,
                  outcome=r.texts(e["outcome"], "expect.outcome") if "outcome" in e else ())


def _heard(r: _Reader, value: Any) -> tuple[tuple[re.Pattern[str], ...], ...]:
    """``heard``: patterns one turn matches all of, or a list of such lists."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return tuple(r.patterns(v, f"expect.heard[{i}]") for i, v in enumerate(value))
    return (r.patterns(value, "expect.heard"),)


def load_dir(directory: str | Path = DEFAULT_DIR) -> list[Script]:
    """Every ``*.toml`` caller in ``directory``, by file name; names must be unique."""
    directory = Path(directory)
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise ScriptError(directory, "", "holds no caller files (*.toml)")
    scripts, seen = [], {}
    for path in paths:
        s = load_script(path)
        if s.name in seen:
            raise ScriptError(path, "name", f"{s.name!r} is also the name in {seen[s.name]}")
        seen[s.name] = path
        scripts.append(s)
    return scripts


def select(scripts: list[Script], only: tuple[str, ...] | list[str]) -> list[Script]:
    """The callers named by ``only`` (names or globs; none: all); a pattern matching nothing is
    an error listing the names, so a typo does not run an empty bench."""
    if not only:
        return list(scripts)
    for pattern in only:
        if not any(fnmatch.fnmatchcase(s.name, pattern) for s in scripts):
            raise ValueError(f"--only {pattern!r} matches no caller; the callers are: "
                             + ", ".join(s.name for s in scripts))
    return [s for s in scripts if any(fnmatch.fnmatchcase(s.name, p) for p in only)]
