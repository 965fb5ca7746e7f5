"""The agent's opening hours: the one source of the facts a caller is told and held to.

``[hours]`` in an agent file gives each weekday's opening ("09:00-17:00", "" = closed), the
appointment grid (``slot_minutes``) and closed dates. The same table fills ``{hours}`` in
knowledge answers and prompts, checks a date and time a caller gives before anything is
confirmed ("We're not open at 1 a.m."), and sets the example booking system's calendar, so
what the agent says, what it accepts and what the booking system takes cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..config.schema import key
from .spoken import spoken_time

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class Hours:
    monday: str = key("", doc='opening on Mondays, "HH:MM-HH:MM"; "" = closed')
    tuesday: str = key("", doc='opening on Tuesdays, "HH:MM-HH:MM"; "" = closed')
    wednesday: str = key("", doc='opening on Wednesdays, "HH:MM-HH:MM"; "" = closed')
    thursday: str = key("", doc='opening on Thursdays, "HH:MM-HH:MM"; "" = closed')
    friday: str = key("", doc='opening on Fridays, "HH:MM-HH:MM"; "" = closed')
    saturday: str = key("", doc='opening on Saturdays, "HH:MM-HH:MM"; "" = closed')
    sunday: str = key("", doc='opening on Sundays, "HH:MM-HH:MM"; "" = closed')
    slot_minutes: int = key(30, doc="appointments start every this many minutes from opening", min=5, max=240)
    closed_dates: list[str] = key([], doc="dates closed besides the weekly ones (YYYY-MM-DD: holidays)")

    @property
    def known(self) -> bool:
        """Does this agent say when it is open at all? (no [hours]: nothing is checked)"""
        return any(getattr(self, d) for d in WEEKDAYS)

    def check(self) -> list[str]:
        out = []
        for d in WEEKDAYS:
            value = getattr(self, d)
            m = _RANGE.match(value) if value else None
            if value and (m is None or value.split("-")[0] >= value.split("-")[1]):
                out.append(f'hours.{d}: "{value}" must be "HH:MM-HH:MM" with the opening before the closing')
        for value in self.closed_dates:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                out.append(f'hours.closed_dates: "{value}" is not a date (YYYY-MM-DD)')
        return out

    def opening(self, day: dt.date) -> tuple[dt.time, dt.time] | None:
        """(open, close) on ``day``, or None when closed."""
        if day.isoformat() in self.closed_dates:
            return None
        value = getattr(self, WEEKDAYS[day.weekday()])
        if not value:
            return None
        a, b = value.split("-")
        return _time(a), _time(b)

    def slots(self, day: dt.date) -> list[str]:
        """Every appointment start on ``day`` ("09:00", "09:30", ...; the last ends at closing)."""
        span = self.opening(day)
        if span is None:
            return []
        out, t = [], dt.datetime.combine(day, span[0])
        end = dt.datetime.combine(day, span[1])
        while t + dt.timedelta(minutes=self.slot_minutes) <= end:
            out.append(t.strftime("%H:%M"))
            t += dt.timedelta(minutes=self.slot_minutes)
        return out

    def date_problem(self, day: dt.date, today: dt.date) -> str | None:
        """Why a caller cannot come on ``day`` (as said to them), or None."""
        if day < today:
            return "That day has already passed."
        if self.opening(day) is None:
            if day.isoformat() in self.closed_dates:
                return "We're closed that day."
            return f"We're closed on {WEEKDAYS[day.weekday()].capitalize()}s."
        return None

    def time_problem(self, hhmm: str, day: dt.date | None = None) -> str | None:
        """Why ``hhmm`` is no appointment time (on ``day``, or on any open day), or None."""
        days = [day] if day is not None else _week()
        if any(hhmm in self.slots(d) for d in days):
            return None
        if any(_inside(hhmm, self.opening(d)) for d in days):
            return f"Appointments start every {self.slot_minutes} minutes, on the hour or half hour." \
                if self.slot_minutes == 30 else f"Appointments start every {self.slot_minutes} minutes."
        return f"We're not open at {spoken_time(hhmm).removesuffix('.')}."

    def suggest(self, hhmm: str, day: dt.date | None = None) -> str | None:
        """The likeliest meant time when ``hhmm`` is not one: the same clock reading on the
        other side of noon ("1 a.m." -> 1 p.m.), else the nearest start on the grid."""
        h, m = int(hhmm[:2]), int(hhmm[3:])
        flipped = f"{(h + 12) % 24:02d}:{m:02d}"
        if self.time_problem(flipped, day) is None:
            return flipped
        days = [day] if day is not None else _week()
        starts = sorted({s for d in days for s in self.slots(d)})
        minutes = h * 60 + m
        near = min(starts, key=lambda s: abs(int(s[:2]) * 60 + int(s[3:]) - minutes), default=None)
        if near is not None and abs(int(near[:2]) * 60 + int(near[3:]) - minutes) <= self.slot_minutes:
            return near
        return None

    def span(self) -> str:
        """"from nine a.m. to five p.m." when every open day keeps the same hours, else the whole
        description (``{hours_span}`` in an agent file: a prompt that stays short)."""
        spans = {getattr(self, d) for d in WEEKDAYS if getattr(self, d)}
        if len(spans) == 1:
            a, b = spans.pop().split("-")
            return f"from {spoken_time(a)} to {spoken_time(b)}"
        return self.describe()

    def describe(self) -> str:
        """The hours as said to a caller: "Monday to Friday from 9 a.m. to 5 p.m., and Saturday
        from 9 a.m. to 1 p.m.; we're closed on Sunday"."""
        groups: list[tuple[list[str], str]] = []
        for d in WEEKDAYS:
            value = getattr(self, d)
            if groups and groups[-1][1] == value and _next_day(groups[-1][0][-1]) == d:
                groups[-1][0].append(d)
            else:
                groups.append(([d], value))
        open_parts, closed = [], []
        for days, value in groups:
            name = days[0].capitalize() + (f" to {days[-1].capitalize()}" if len(days) > 2 else
                                           f" and {days[-1].capitalize()}" if len(days) == 2 else "")
            if value:
                a, b = value.split("-")
                open_parts.append(f"{name} from {spoken_time(a)} to {spoken_time(b)}")
            else:
                closed.append(name)
        text = ", and ".join([", ".join(open_parts[:-1]), open_parts[-1]] if len(open_parts) > 1 else open_parts)
        return text + (f"; we're closed on {' and '.join(closed)}" if closed else "")


def _time(hhmm: str) -> dt.time:
    return dt.time(23, 59, 59) if hhmm == "24:00" else dt.time(int(hhmm[:2]), int(hhmm[3:]))


def _inside(hhmm: str, span: tuple[dt.time, dt.time] | None) -> bool:
    return span is not None and span[0] <= _time(hhmm) < span[1]


def _next_day(day: str) -> str:
    return WEEKDAYS[(WEEKDAYS.index(day) + 1) % 7]


def _week() -> list[dt.date]:
    monday = dt.date(2001, 1, 1)  # a Monday: one of each weekday, no closed dates
    return [monday + dt.timedelta(days=i) for i in range(7)]
