"""Dates and times as the caller hears them, not as a tool stores them.

A slot holds "2026-12-15" and "10:00" because tools want those; a caller must hear "Tuesday,
December fifteenth" and "ten a.m.", and the call record keeps what the caller heard. ttsd's
text normaliser would read "2026-12-15 at 01:00" digit by digit.
"""

from __future__ import annotations

import datetime as dt
import re

from ..speech.textnorm import cardinal, ordinal

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def spoken_date(iso: str, today: dt.date | None = None) -> str:
    """"Tuesday, December fifteenth" (with the year only when it is not this one or the next
    few months'); anything that is not a date comes back unchanged."""
    try:
        day = dt.date.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso
    text = f"{day:%A}, {day:%B} {ordinal(day.day)}"
    today = today or dt.date.today()
    if abs((day - today).days) > 300:
        text += f", {day.year}"
    return text


def spoken_time(hhmm: str) -> str:
    """"ten a.m.", "two thirty p.m.", "nine oh five a.m.", "noon", "midnight"."""
    m = CLOCK.match(hhmm or "")
    if m is None:
        return "midnight" if hhmm == "24:00" else hhmm
    h, minute = int(m.group(1)), int(m.group(2))
    if (h, minute) == (12, 0):
        return "noon"
    if (h, minute) == (0, 0):
        return "midnight"
    suffix = "a.m." if h < 12 else "p.m."
    hour = cardinal(h % 12 or 12)
    if minute == 0:
        return f"{hour} {suffix}"
    mins = f"oh {cardinal(minute)}" if minute < 10 else cardinal(minute).replace("-", " ")
    return f"{hour} {mins} {suffix}"


_PHONE = re.compile(r"\+?\d{7,15}")
_DIGIT_WORDS = "oh one two three four five six seven eight nine".split()


def spoken_digits(number: str) -> str:
    """A phone number digit by digit in groups, as people read one back: "five five five, eight
    six seven, five three oh nine" (a TTS reads "5558675309" as billions)."""
    digits = re.sub(r"\D", "", number)
    groups = [digits[0]] if len(digits) == 11 and digits[0] == "1" else []  # the country code
    digits = digits[len(groups):]
    while len(digits) > 4:
        groups.append(digits[:3])
        digits = digits[3:]
    groups.append(digits)
    return ", ".join(" ".join(_DIGIT_WORDS[int(d)] for d in g) for g in groups)


def spoken(value: str) -> str:
    """A slot or tool value as said: dates and clock times in words, phone numbers digit by
    digit, the rest as it is."""
    if isinstance(value, str):
        if ISO_DATE.match(value):
            return spoken_date(value)
        if CLOCK.match(value):
            return spoken_time(value)
        if _PHONE.fullmatch(value.replace(" ", "").replace("-", "")):
            return spoken_digits(value)
    return value
