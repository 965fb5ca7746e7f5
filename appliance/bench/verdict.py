"""Did a scripted caller get what it called for? The ``[expect]`` of its file (bench/script.py)
checked against what the call left behind: the booking system's rows and the call record.

Pure functions of plain facts, so a check is tested without a call and the same verdict can
serve the admin's agent tests later. Also: the agent's loops, read from its turns alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

from .script import Script, resolve_date

LOOP_AT = 3  # the same question a third time: the agent is stuck, whoever is to blame


@dataclass
class CallFacts:
    """What a call left behind. ``appointments``: the booking system's rows after the call
    ({id, name, phone, date, time}); ``seeded``: the seed id -> its row as it was before."""

    outcome: str
    agent_turns: list[str] = field(default_factory=list)  # what the caller heard of each
    transfers: list[str] = field(default_factory=list)    # targets requested
    messages: list[str] = field(default_factory=list)     # messages taken
    appointments: list[dict] = field(default_factory=list)
    seeded: dict[str, dict] = field(default_factory=dict)


def _name_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _row(a: dict) -> str:
    return f"{a.get('name', '?')} {a.get('date', '?')} {a.get('time', '?')}"


def check(script: Script, facts: CallFacts, today: dt.date, caller_number: str = "") -> list[str]:
    """Why the caller's goal was not reached: one line per unmet expectation (empty: success)."""
    e, why = script.expect, []
    by_id = {a["id"]: a for a in facts.appointments}
    seeded_ids = {s["id"] for s in facts.seeded.values()}
    new = [a for a in facts.appointments if a["id"] not in seeded_ids]

    if e.booked is not None:
        b = e.booked
        day = resolve_date(b.date, today).isoformat() if b.date else None
        phone = caller_number if b.phone == "caller" else b.phone

        def fits(a: dict) -> bool:
            return ((b.name is None or all(w in _name_words(a["name"]) for w in _name_words(b.name)))
                    and (day is None or a["date"] == day) and (b.time is None or a["time"] == b.time)
                    and (phone is None or _digits(a["phone"]) == _digits(phone)))

        if not any(fits(a) for a in new):
            wanted = " ".join(x for x in (b.name, f"on {day} ({b.date})" if day else None,
                                          f"at {b.time}" if b.time else None) if x)
            why.append(f"no new appointment for {wanted}; new in the booking system: "
                       + (", ".join(_row(a) for a in new) or "none"))
    if e.moved is not None:
        m = e.moved
        was = facts.seeded[m.seed]
        now = by_id.get(was["id"])
        day = resolve_date(m.date, today).isoformat() if m.date else None
        if now is None:
            why.append(f"appointment {m.seed!r} was to be moved but is gone")
        elif (day is not None and now["date"] != day) or (m.time is not None and now["time"] != m.time):
            want = " ".join(x for x in (f"{day} ({m.date})" if day else None, m.time) if x)
            why.append(f"appointment {m.seed!r} not moved to {want}: it is at {now['date']} {now['time']}"
                       f" (was {was['date']} {was['time']})")
    for seed in e.cancelled:
        if facts.seeded[seed]["id"] in by_id:
            why.append(f"appointment {seed!r} was not cancelled")
    for seed in e.kept:
        was, now = facts.seeded[seed], by_id.get(facts.seeded[seed]["id"])
        if now is None:
            why.append(f"appointment {seed!r} was to be kept but is gone")
        elif (now["date"], now["time"]) != (was["date"], was["time"]):
            why.append(f"appointment {seed!r} was to be kept but moved to {now['date']} {now['time']}")
    if e.transfer is False and facts.transfers:
        why.append(f"transferred to {', '.join(facts.transfers)} (expected no transfer)")
    elif isinstance(e.transfer, str) and e.transfer not in facts.transfers:
        why.append(f"no transfer to {e.transfer} (transfers: {', '.join(facts.transfers) or 'none'})")
    for group in e.heard:
        if not any(all(p.search(t) for p in group) for t in facts.agent_turns):
            why.append("no agent turn matched all of: " + ", ".join(p.pattern for p in group))
    if e.message is not None and not any(all(p.search(m) for p in e.message) for m in facts.messages):
        why.append("no message taken matching all of: " + (", ".join(p.pattern for p in e.message) or "(any)")
                   + (f" (messages: {facts.messages})" if facts.messages else " (none taken)"))
    if e.outcome and facts.outcome not in e.outcome:
        why.append(f"outcome {facts.outcome!r}, expected {' or '.join(repr(o) for o in e.outcome)}")
    return why


def questions(turn: str) -> list[str]:
    """The questions in an agent turn, normalised (case, punctuation, spacing)."""
    out = []
    for sentence in re.findall(r"[^.!?]*\?", turn):
        words = " ".join(re.findall(r"[a-z0-9']+", sentence.lower()))
        if words:
            out.append(words)
    return out


def loops(agent_turns: list[str], at: int = LOOP_AT) -> list[str]:
    """The questions the agent asked ``at`` times or more in one call."""
    counts = Counter(q for turn in agent_turns for q in questions(turn))
    return [q for q, n in counts.items() if n >= at]
