"""Slots from an English ASR transcript, by rules: dates, times, numbers, phone numbers, names,
yes/no, and whether an utterance is only a backchannel.

``extract(text, today)`` returns only the slots it found, as strings:

* ``date``: ISO ``YYYY-MM-DD``, resolved against ``today``: "today", "tonight", "tomorrow",
  "the day after tomorrow", "in two weeks" / "three days from now", weekdays, "March 5th",
  "the 5th of March", "5/3" (US: May 3rd), "5/3/2027", "2027-05-03", and a day of the month
  alone ("on the 3rd", "the twenty third"). A date without a year is the next one on or after
  ``today``; a day alone is this month's, or next month's once this month's has passed.
  Weekdays: "Tuesday" is the next Tuesday after today (1-7 days), "this Tuesday" the coming one
  (today included), "next Tuesday" and "Tuesday next week" the Tuesday of next calendar week
  (weeks start on Monday), "Tuesday after next" a week later.
* ``time``: 24-hour ``HH:MM``: "3 pm", "3:30", "three thirty", "half past nine", "quarter to
  ten", "twenty past four", "noon", "midnight", "at 3". Without am/pm the part of day decides
  ("nine in the evening" is 21:00); failing that, business hours: 1-6 is pm, 7-11 am.
* ``part_of_day``: ``morning``, ``afternoon``, ``evening``, ``night`` or ``midday`` (lunchtime).
* ``phone``: 7-15 digits, said as digits or words ("five five five, one two three ...").
* ``number``: the first other number (digits or words, via ``textnorm.to_digits``), as digits.
* ``name``: after "my name is", "name's", "call me", "this is", "I'm" / "I am", title-cased;
  the weak triggers ("this is", "I'm") skip ordinary words ("I'm calling", "this is about").

``yes_no(text)`` reads the start of an answer ("yeah", "that's right", "no I said Tuesday",
"not really", "yeah no"). ``is_backchannel(text)`` is true for an utterance made only of
listener noises ("mhm", "uh-huh", "okay", "right", "yeah", "hmm"): said while the agent talks,
it must not interrupt it.

Stdlib only apart from ``textnorm``. Every public function takes any string and never raises.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata

from ...speech.textnorm import cardinal, ordinal, to_digits

__all__ = ["extract", "yes_no", "is_backchannel", "SLOT_KEYS"]

SLOT_KEYS = ("date", "time", "part_of_day", "number", "phone", "name")

# --- normalisation -----------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_PROTECT = {"-": "\x01", ".": "\x02", "/": "\x03", ":": "\x04"}  # separators inside numbers survive
_UNPROTECT = str.maketrans({v: k for k, v in _PROTECT.items()})


def _normalise(text: str) -> str:
    """Lowercase, "a.m." -> "am", punctuation -> space except inside numbers ("3:30", "5/3",
    "555-1234", "3.5") and apostrophes inside words ("o'clock", "that's")."""
    s = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    s = re.sub(r"(?<![a-z])([ap])\.\s?m\b\.?", r"\1m", s)
    s = re.sub(r"(?<=\d)[-./:](?=\d)", lambda m: _PROTECT[m[0]], s)
    s = re.sub(r"[^\w\s'+\x01-\x04]|_", " ", s).translate(_UNPROTECT)
    s = re.sub(r"(?<!\w)'|'(?!\w)", " ", s)
    return " ".join(s.split())


def _words(text: str) -> list[str]:
    return _normalise(text).split()


def _blank(s: str, spans: list[tuple[int, int]]) -> str:
    """Overwrite spans with ';' (same length, so other spans stay valid; ';' ends a number run)."""
    chars = list(s)
    for a, b in spans:
        chars[a:b] = ";" * (b - a)
    return "".join(chars)


# --- number words ------------------------------------------------------------------------------

def _spoken(n: int) -> str:
    return cardinal(n).replace("-", " ")


def _spoken_ordinal(n: int) -> str:
    return ordinal(n).replace("-", " ")


_CARD_WORDS = {_spoken(n): n for n in range(0, 60)}
_ORD_WORDS = {_spoken_ordinal(n): n for n in range(1, 32)}


def _alt(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_HOUR_W = _alt(_spoken(n) for n in range(1, 13))
_MIN_W = rf"(?:oh\s+(?:{_UNITS})|(?:twenty|thirty|forty|fifty)(?:\s+(?:{_UNITS}))?|" \
         rf"ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
_DAY_ORD_W = _alt(_ORD_WORDS)
_DAY_CARD_W = _alt(_spoken(n) for n in range(1, 32))
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2, "a couple": 2,
                "couple of": 2, "couple": 2}


def _number_value(word: str) -> int | None:
    """"12", "twelve", "twenty five", "oh five", "third", "23rd" -> int."""
    w = " ".join(word.split())
    if w.startswith("oh "):
        w = w[3:]
    digits = re.fullmatch(r"(\d+)(?:st|nd|rd|th)?", w)
    if digits:
        return int(digits[1]) if len(digits[1]) <= 6 else None
    if w in _CARD_WORDS:
        return _CARD_WORDS[w]
    if w in _ORD_WORDS:
        return _ORD_WORDS[w]
    return _COUNT_WORDS.get(w)


# --- dates -------------------------------------------------------------------------------------

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS["sept"] = 9
_MONTH = _alt(_MONTHS)
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_WEEKDAY = _alt(_WEEKDAYS)
_DAY = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_DAY_ORD_W}|{_DAY_CARD_W})"
_DAY_ORDINAL = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_DAY_ORD_W})"
_YEAR = r"(?:\s+(?P<year>\d{4}))?"
_NOT_A_DATE_AFTER = (r"(?!\s+(?:available|one|ones|time|times|thing|appointment|opening|slot|visit|floor|option|"
                     r"person|step|call|name|choice|place|half|opinion|chance|cleaning|patient)\b)")

_DATE_PATTERNS: list[tuple[int, str, re.Pattern[str]]] = [
    (0, "iso", re.compile(r"\b(?P<year>\d{4})-(?P<mon>\d{1,2})-(?P<day>\d{1,2})\b")),
    (0, "numeric", re.compile(r"(?<![\d/.])(?P<mon>\d{1,2})/(?P<day>\d{1,2})(?:/(?P<year>\d{4}|\d{2}))?(?![\d/])")),
    (0, "month_day", re.compile(rf"\b(?P<mon>{_MONTH})\s+(?:the\s+)?(?P<day>{_DAY}){_YEAR}\b")),
    (0, "day_month", re.compile(rf"\b(?:the\s+)?(?P<day>{_DAY_ORDINAL})\s+(?:of\s+)?(?P<mon>{_MONTH}){_YEAR}\b")),
    (1, "day_after", re.compile(r"\b(?:the\s+)?day\s+after\s+tomorrow\b")),
    (1, "offset", re.compile(
        r"\b(?:in\s+(?P<n>\d{1,3}|a\s+couple(?:\s+of)?|couple\s+of|a|an|one|two|three|four|five|six|seven|eight|"
        r"nine|ten|eleven|twelve)\s+(?P<unit>day|days|week|weeks|month|months)\b"
        r"|(?P<n2>\d{1,3}|a\s+couple(?:\s+of)?|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
        r"twelve)\s+(?P<unit2>day|days|week|weeks|month|months)\s+from\s+(?:now|today)\b)")),
    (1, "named", re.compile(r"\b(?P<word>today|tonight|tomorrow|tomorrow's|yesterday|"
                            r"this\s+(?:morning|afternoon|evening))\b")),
    (2, "weekday", re.compile(
        rf"\b(?:(?P<mod>this\s+coming|coming|this|next)\s+)?(?P<wd>{_WEEKDAY})(?:\s+(?P<after>next\s+week|after\s+next))?\b")),
    (3, "day_only", re.compile(
        rf"(?:\b(?:on\s+)?the\s+(?P<day>{_DAY_ORDINAL})|\b(?P<dday>\d{{1,2}}(?:st|nd|rd|th)))\b{_NOT_A_DATE_AFTER}")),
]


def _add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _upcoming(today: dt.date, month: int, day: int, year: int | None) -> dt.date | None:
    """month/day in the given year, or the next one on or after today."""
    try:
        if year is not None:
            return dt.date(year, month, day)
        candidate = dt.date(today.year, month, day)
        return candidate if candidate >= today else dt.date(today.year + 1, month, day)
    except ValueError:  # 31/2, or Feb 29th in a year without one
        if year is None and month == 2 and day == 29:
            for y in range(today.year + 1, today.year + 9):
                if calendar.isleap(y):
                    return dt.date(y, 2, 29)
        return None


def _resolve_date(kind: str, m: re.Match[str], today: dt.date) -> dt.date | None:
    g = m.groupdict()
    if kind in ("iso", "numeric", "month_day", "day_month"):
        month = int(g["mon"]) if g["mon"].isdigit() else _MONTHS[g["mon"]]
        day = _number_value(g["day"])
        year = int(g["year"]) if g.get("year") else None
        if year is not None and year < 100:
            year += 2000
        if day is None or not 1 <= month <= 12 or not 1 <= day <= 31:
            return None
        return _upcoming(today, month, day, year)
    if kind == "day_after":
        return today + dt.timedelta(days=2)
    if kind == "offset":
        n = _number_value(g["n"] or g["n2"])
        unit = g["unit"] or g["unit2"]
        if n is None or n > 400:
            return None
        if unit.startswith("month"):
            return _add_months(today, n)
        return today + dt.timedelta(days=n * (7 if unit.startswith("week") else 1))
    if kind == "named":
        return today + dt.timedelta(days={"yesterday": -1, "tomorrow": 1, "tomorrow's": 1}.get(g["word"], 0))
    if kind == "weekday":
        wd = _WEEKDAYS[g["wd"]]
        mod = " ".join((g["mod"] or "").split())
        after = " ".join((g["after"] or "").split())
        if mod == "next" or after:
            monday_next = today + dt.timedelta(days=7 - today.weekday())
            return monday_next + dt.timedelta(days=wd + (7 if after == "after next" else 0))
        delta = (wd - today.weekday()) % 7
        if not mod and delta == 0:
            delta = 7
        return today + dt.timedelta(days=delta)
    if kind == "day_only":
        day = _number_value(g["day"] or g["dday"])
        if day is None or not 1 <= day <= 31:
            return None
        first = today.replace(day=1)
        for months in range(0, 4):
            month_start = _add_months(first, months)
            if day <= calendar.monthrange(month_start.year, month_start.month)[1]:
                candidate = month_start.replace(day=day)
                if candidate >= today:
                    return candidate
        return None
    return None


def _dates(s: str, today: dt.date) -> tuple[str | None, list[tuple[int, int]]]:
    """(ISO date of the best candidate, spans of every date expression)."""
    found = []
    for priority, kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(s):
            found.append((priority, m.start(), kind, m))
    resolved, spans = _first_resolved(found, lambda kind, m: _resolve_date(kind, m, today))
    return (resolved.isoformat() if resolved else None), spans


def _first_resolved(found: list, resolve) -> tuple:
    """Candidates by (priority, position); the first that resolves wins. A candidate inside the
    span of one already tried is skipped ("February 30th" is no date, not "the 30th")."""
    spans = [(m.start(), m.end()) for *_, m in found]
    tried: list[tuple[int, int]] = []
    for _priority, _start, kind, m in sorted(found, key=lambda f: (f[0], f[1])):
        if any(a <= m.start() and m.end() <= b for a, b in tried):
            continue
        resolved = resolve(kind, m)
        if resolved is not None:
            return resolved, spans
        tried.append((m.start(), m.end()))
    return None, spans


# --- times and parts of day --------------------------------------------------------------------

_AP = r"(?P<ap>am|pm|a\s+m|p\s+m)\b"
_HOUR = rf"(?:\d{{1,2}}|{_HOUR_W})"
_PART_AFTER = r"(?:in\s+the\s+(?:morning|afternoon|evening)|at\s+night|tonight|this\s+(?:morning|afternoon|evening))\b"

_TIME_PATTERNS: list[tuple[int, str, re.Pattern[str]]] = [
    (0, "clock", re.compile(rf"\b(?P<h>\d{{1,2}}):(?P<m>\d{{2}})(?!\d)(?:\s*{_AP})?")),
    (0, "clock", re.compile(rf"\b(?P<h>\d{{1,2}})\.(?P<m>\d{{2}})\s*{_AP}")),
    (0, "clock", re.compile(rf"\b(?P<h>\d{{1,2}})(?P<m>\d{{2}})\s*{_AP}")),  # "330 pm"
    (0, "clock", re.compile(rf"\b(?P<h>\d{{1,2}})\s*(?:{_AP}|(?P<oclock>o'clock)\b)")),
    (0, "relative", re.compile(
        rf"(?<!from\s)(?<!between\s)\b(?:(?P<half>half)|(?:a\s+)?(?P<quarter>quarter)|(?P<n>\d{{1,2}}|{_MIN_W}|five|ten)(?:\s+minutes?)?)\s+"
        rf"(?P<dir>past|after|to|till|til|before|of)\s+(?P<h>{_HOUR})\b(?:\s*(?:{_AP}|o'clock\b))?")),
    (0, "clock", re.compile(rf"\b(?P<h>{_HOUR_W})(?:\s+(?P<m>{_MIN_W}))?\s*(?:{_AP}|(?P<oclock>o'clock)\b)")),
    (0, "clock", re.compile(rf"\b(?P<h>{_HOUR})(?:\s+(?P<m>{_MIN_W}))?\s+{_PART_AFTER}")),  # "nine at night"
    (1, "clock", re.compile(rf"\b(?P<h>{_HOUR_W})\s+(?P<m>{_MIN_W})\b")),  # "three thirty"
    (1, "named", re.compile(r"\b(?:twelve\s+|12\s+)?(?P<word>noon|midday|midnight)\b")),
    # "at 930", "at 1030": a recogniser writes a spoken "nine thirty" after "at" as digits
    (1, "clock", re.compile(r"\b(?:at|around|about|by)\s+(?P<h>\d{1,2})(?P<m>[0-5]\d)\b(?!\s*(?:people|am|pm|[-.]?\s*\d))")),
    (2, "clock", re.compile(rf"\b(?:at|around|about|by|after|before|until|till|from)\s+(?P<h>{_HOUR})\b"
                            r"(?!\s*(?:people|persons|kids|children|minutes|hours|days|weeks|months|years|of)\b)")),
]

_PART_OF_DAY = [
    (re.compile(r"\b(?:morning|mornings|first\s+thing)\b"), "morning"),
    (re.compile(r"\b(?:afternoon|afternoons)\b"), "afternoon"),
    (re.compile(r"\b(?:evening|evenings|tonight|after\s+work)\b"), "evening"),
    (re.compile(r"\b(?:night|nights|overnight)\b"), "night"),
    (re.compile(r"\b(?:lunchtime|lunch\s+time|lunch|lunch\s+hour)\b"), "midday"),
]


def _part_of_day(s: str) -> str | None:
    best = None
    for pattern, part in _PART_OF_DAY:
        m = pattern.search(s)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), part)
    return best[1] if best else None


def _to_24h(hour: int, minute: int, ap: str | None, part: str | None) -> tuple[int, int] | None:
    """12-hour reading to 24-hour: am/pm if said, else the part of day, else business hours
    (1-6 is pm, 7-11 am, 12 noon)."""
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    if hour > 12 or hour == 0:
        return hour, minute  # already a 24-hour clock
    if ap:
        pm = ap.replace(" ", "") == "pm"
    elif part == "morning":
        pm = hour == 12  # "twelve in the morning" is more likely a slip for noon than midnight
    elif part in ("afternoon", "evening"):
        pm = True
    elif part == "night":
        pm = not (hour == 12 or hour <= 4)  # "eleven at night" 23:00, "twelve" / "two at night" am
    else:
        pm = hour <= 6 or hour == 12
    if hour == 12:
        return (12 if pm else 0), minute
    return hour + (12 if pm else 0), minute


def _resolve_time(kind: str, m: re.Match[str], part: str | None) -> tuple[int, int] | None:
    g = m.groupdict()
    if kind == "named":
        return (0, 0) if g["word"] == "midnight" else (12, 0)
    hour = _number_value(g["h"])
    if hour is None:
        return None
    ap = g.get("ap")
    if kind == "relative":
        if g["half"]:
            minutes = 30
        elif g["quarter"]:
            minutes = 15
        else:
            minutes = _number_value(g["n"])
        if minutes is None or not 1 <= minutes <= 30 or not 1 <= hour <= 12:
            return None
        if g["dir"] in ("past", "after"):
            return _to_24h(hour, minutes, ap, part)
        hour, minute = (hour - 1) or 12, 60 - minutes
        return _to_24h(hour, minute, ap, part)
    minute = _number_value(g["m"]) if g.get("m") else 0
    if minute is None:
        return None
    if hour > 12 and ap:
        return None
    return _to_24h(hour, minute, ap, part)


def _times(s: str, part: str | None) -> tuple[str | None, list[tuple[int, int]]]:
    found = []
    for priority, kind, pattern in _TIME_PATTERNS:
        for m in pattern.finditer(s):
            found.append((priority, m.start(), kind, m))
    resolved, spans = _first_resolved(found, lambda kind, m: _resolve_time(kind, m, part))
    return (f"{resolved[0]:02d}:{resolved[1]:02d}" if resolved else None), spans


# --- phone numbers and other numbers ------------------------------------------------------------

_PHONE_RE = re.compile(r"(?<![\w+])\+?\(?\d+(?:[\s\-.)]{1,2}\(?\d+)*(?!\w)")
_NUMBER_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:st|nd|rd|th)?(?!\w)")


def _phone(s: str) -> tuple[str | None, list[tuple[int, int]]]:
    for m in _PHONE_RE.finditer(s):
        digits = re.sub(r"\D", "", m[0])
        if 7 <= len(digits) <= 15:
            return ("+" if m[0].startswith("+") else "") + digits, [(m.start(), m.end())]
    return None, []


def _number(s: str) -> str | None:
    m = _NUMBER_RE.search(s)
    return m[1] if m else None


# --- names -------------------------------------------------------------------------------------

_NAME_TOKEN = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*")
_STRONG_TRIGGERS = [("my", "name", "is"), ("my", "name's"), ("name", "is"), ("name's",), ("under", "the", "name"),
                    ("in", "the", "name", "of")]
_WEAK_TRIGGERS = [("this", "is"), ("i'm",), ("i", "am"), ("im",), ("call", "me"), ("it's", "under"), ("booked", "under")]
_TITLES = {"mr", "mrs", "ms", "miss", "mister", "missus", "dr", "doctor"}
_NOT_NAMES = set("""
a an the and or but if so to of in on at by for from with about as into over under after before again also just
still only really very too not no yes yeah yep okay ok well um uh er hmm oh ah hi hello hey please thanks thank you
i me my mine we us our you your he him his she her it its they them their this that these those there here what
who whom which when where why how is am are was were be been being do does did done have has had having will
would shall should can could may might must calling call phoning ringing speaking looking trying wondering hoping
going gonna wanna gotta need needing want wanting like sorry fine good great sure glad happy afraid aware able
unable ready busy free available new existing old regular patient patients interested concerned worried nervous
scared sick ill hurt pain late early away back home out off up down calling regarding re following checking
asking actually currently already maybe probably definitely certainly totally kind sort bit little lot all any
some every much more less most least one two three four five six seven eight nine ten first last next same
other another urgent important emergency about correct right wrong true false confused unsure curious having
pregnant allergic diabetic staying living working calling trying coming leaving moving driving running waiting
outside inside near nearby close downstairs upstairs someone somebody anyone anybody nobody everyone everybody
calling mom mum dad wife husband son daughter mother father parent guardian friend neighbour neighbor dentist
office clinic practice reception receptionist desk team staff appointment booking due supposed meant
booked scheduled registered covered insured returning open closed better worse feeling stuck lost spelled spelt
under later anytime whenever asap sometime soon now today tonight tomorrow yesterday week weekend month year
morning afternoon evening night noon midnight
""".split()) | set(_MONTHS) | set(_WEEKDAYS) | set(_CARD_WORDS) | set(_ORD_WORDS)
# After a weak trigger in an uncased transcript these mean the word before was no name ("i'm due for").
_NOT_AFTER_WEAK_NAME = {"for", "to", "in", "on", "at", "about", "of", "that", "than", "because", "as", "by", "if",
                        "when", "enough", "too"}
_CASE_NEUTRAL = re.compile(r"(?:^|(?<=[.!?]))\s*[\"'(]*\w|\bI(?:'m|'d|'ll|'ve)?\b")
_NAME_ENDERS = {"and", "but", "calling", "here", "speaking", "from", "with", "again", "i", "i'm", "please",
                "thanks", "thank", "um", "uh", "so", "my", "is", "i'd", "i've", "i'll", "who", "for", "at", "on"}


def _name(text: str) -> str | None:
    raw = _NAME_TOKEN.findall(unicodedata.normalize("NFKC", text).translate(_APOSTROPHES))
    low = [t.lower() for t in raw]
    # Case is evidence only when the transcript has some: capitals beyond "I" and sentence starts.
    cased = any(c.isupper() for c in _CASE_NEUTRAL.sub(" ", text))
    for start in range(len(low)):
        for triggers, strong in ((_STRONG_TRIGGERS, True), (_WEAK_TRIGGERS, False)):
            for trigger in triggers:
                end = start + len(trigger)
                if tuple(low[start:end]) != trigger:
                    continue
                name = _name_after(raw, low, end, strong, cased)
                if name:
                    return name
    return None


def _plausible_first(token: str, word: str, strong: bool, cased: bool) -> bool:
    if word in _NOT_NAMES or len(word) < 2:
        return False
    if cased and not strong and not token[:1].isupper():
        return False  # "I'm sure", where the transcript capitalises names
    if not strong and not cased and (re.search(r"(?:ing|ed|ly|ful|ous|ible|able)$", word) and len(word) > 5):
        return False
    return True


def _followed_like_no_name(low: list[str], i: int, strong: bool, cased: bool) -> bool:
    return not strong and not cased and i < len(low) and low[i] in _NOT_AFTER_WEAK_NAME


def _name_after(raw: list[str], low: list[str], i: int, strong: bool, cased: bool) -> str | None:
    while i < len(low) and low[i] in _TITLES:
        i += 1
    if i >= len(low) or not _plausible_first(raw[i], low[i], strong, cased):
        return None
    parts = [raw[i]]
    cased = cased and raw[i][:1].isupper()  # "my name is maria gonzalez" in a cased transcript
    i += 1
    while i < len(low) and len(parts) < 3:
        word = low[i]
        if word in _NAME_ENDERS or word in _NOT_NAMES or len(word) < 2 or (cased and not raw[i][:1].isupper()):
            break
        if not strong and not cased:
            break  # "i'm john need a cleaning": without case only one word is safe after a weak trigger
        parts.append(raw[i])
        i += 1
    if _followed_like_no_name(low, i, strong, cased):
        return None
    return " ".join(p[:1].upper() + p[1:] if p.islower() else p for p in parts)


# --- yes / no ----------------------------------------------------------------------------------

def _phrases(text: str) -> list[tuple[str, ...]]:
    return [tuple(p.split()) for p in text.strip().split("\n") if p.strip()]


_YES = _phrases("""
yes
yeah
yea
ya
yep
yup
yes please
sure
sure thing
certainly
absolutely
definitely
of course
correct
that's correct
that is correct
thats correct
right
that's right
that is right
thats right
exactly
indeed
affirmative
ok
okay
k
alright
all right
uh huh
mhm
mm hmm
that's it
that works
that'd work
that would work
that works for me
that's fine
that is fine
that's good
that's great
that's perfect
that'd be great
that would be great
that sounds good
sounds good
sounds great
sounds perfect
go ahead
please do
do it
i think so
i guess so
i believe so
yeah no problem
yeah no worries
no problem
no worries
""")
_YES_ALONE = _phrases("""
i do
i would
i will
i can
i am
it is
it does
perfect
great
fine
good
please
""")
_NO = _phrases("""
no
nope
nah
no thanks
no thank you
not really
not at all
not yet
not quite
not exactly
negative
incorrect
wrong
never
yeah no
absolutely not
definitely not
certainly not
of course not
that's not
that is not
thats not
that's wrong
that isn't
it's not
it is not
it isn't
i don't
i do not
i dont
don't
i can't
i cannot
i can not
i'd rather not
rather not
""")
_NEITHER = _phrases("""
i don't know
i dont know
i do not know
i don't remember
i'm not sure
im not sure
i am not sure
not sure
maybe
i don't care
""")
_LEAD_FILLERS = _phrases("""
um
uh
er
erm
ah
oh
well
hmm
so
like
i mean
i said
i said that
""")
_LEAD_FILLERS.sort(key=len, reverse=True)
_TRAILING_OK = {"please", "thanks", "thank", "you", "sir", "ma'am", "then", "yeah", "yes", "um", "uh"}
_TABLE = sorted([(p, "yes", False) for p in _YES] + [(p, "yes", True) for p in _YES_ALONE]
                + [(p, "no", False) for p in _NO] + [(p, None, False) for p in _NEITHER],
                key=lambda entry: len(entry[0]), reverse=True)


def _strip_one_filler(words: list[str]) -> list[str]:
    """words without a leading filler ("um", "well", "I said"); the same list if none."""
    for filler in _LEAD_FILLERS:
        if tuple(words[:len(filler)]) == filler and len(words) > len(filler):
            return words[len(filler):]
    return words


def yes_no(text: str) -> str | None:
    """"yes", "no" or None for an answer to a yes/no question, read from how it starts."""
    if not isinstance(text, str):
        return None
    words = [_canon(w) for w in _words(text)]
    if words == ["uh", "uh"]:  # "uh-uh"
        return "no"
    while words:
        for phrase, answer, alone in _TABLE:
            n = len(phrase)
            if tuple(words[:n]) == phrase and (not alone or all(w in _TRAILING_OK for w in words[n:])):
                return answer
        rest = _strip_one_filler(words)
        if rest is words:
            return None
        words = rest
    return None


# --- backchannels ------------------------------------------------------------------------------

_BC_CANON = {"mmhmm": "mhm", "mmhm": "mhm", "mhmm": "mhm", "uhhuh": "uh huh", "okey": "okay", "kay": "okay"}
_BACKCHANNEL_WORDS = {"mhm", "hmm", "mm", "uh", "um", "er", "erm", "ah", "oh", "aha", "ahh", "ohh", "okay", "ok",
                      "k", "right", "yeah", "yep", "yup", "ya", "yea", "sure", "alright", "gotcha", "cool", "great",
                      "perfect", "good", "wow", "nice"}
_BACKCHANNEL_PAIRS = {("uh", "huh"), ("mm", "hmm"), ("i", "see"), ("got", "it"), ("all", "right")}
_MAX_BACKCHANNEL_WORDS = 5


def _canon(word: str) -> str:
    if re.fullmatch(r"m+h*m+|h+m+|m+h+m*", word):
        return "mhm" if "h" in word and word[0] == "m" else "hmm" if word[0] == "h" else "mm"
    return _BC_CANON.get(word, word)


def is_backchannel(text: str) -> bool:
    """True for an utterance of listener noises only ("mhm", "uh-huh", "okay", "right", "yeah
    yeah", "hmm", "oh okay", "I see"): a caller saying it while the agent talks is listening, not
    taking the turn. False for anything with content ("yeah I want to book", "no", "wait"), and
    for an empty string (nothing was said)."""
    if not isinstance(text, str):
        return False
    words = [_canon(w) for w in _words(text)]
    if not words or len(words) > _MAX_BACKCHANNEL_WORDS:
        return False
    if words == ["uh", "uh"]:  # "uh-uh" is a no
        return False
    i = 0
    while i < len(words):
        if tuple(words[i:i + 2]) in _BACKCHANNEL_PAIRS:
            i += 2
        elif words[i] in _BACKCHANNEL_WORDS:
            i += 1
        else:
            return False
    return True


# --- all slots ---------------------------------------------------------------------------------

def extract(text: str, today: dt.date) -> dict[str, str]:
    """The slots found in a transcript (keys from SLOT_KEYS; absent when not found)."""
    if not isinstance(text, str) or not text.strip():
        return {}
    if isinstance(today, dt.datetime):
        today = today.date()
    slots: dict[str, str] = {}
    s = _normalise(text)[:2000]  # a transcript longer than this is not a caller's turn
    part = _part_of_day(s)
    date, date_spans = _dates(s, today)
    rest = _blank(s, date_spans)
    time, time_spans = _times(rest, part)
    rest = to_digits(_blank(rest, time_spans))
    phone, phone_spans = _phone(rest)
    number = _number(_blank(rest, phone_spans))
    name = _name(text[:2000])
    for key, value in (("date", date), ("time", time), ("part_of_day", part), ("number", number),
                       ("phone", phone), ("name", name)):
        if value:
            slots[key] = value
    return slots
