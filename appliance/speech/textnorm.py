"""Text normalisation between written and spoken English (US), for three jobs:

* ``for_speech`` runs before TTS. The agent writes "$45.50", "9:30 am" or "555-123-4567";
  voices misread those or spell them out symbol by symbol, so they become the words a person
  would say. Sentence punctuation (. , ? !) stays: the voice needs it for pauses and pitch.
* ``to_digits`` runs on ASR transcripts. Callers say numbers ("five five five one two three
  four"); the agent and its tools need digits ("5551234").
* ``for_wer`` normalises reference and hypothesis before word error rate is scored, so "10"
  and "ten", "Mr." and "mister", "ill-disposed" and "ill disposed" are not counted as errors.
  It spells numbers with ``for_speech``'s code: what the scorer accepts is what the TTS says.

Stdlib only. The three text functions take any string and never raise.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["cardinal", "ordinal", "for_speech", "to_digits", "for_wer"]

CARDINAL_LIMIT = 10**15  # from here on a number is read digit by digit: nobody says "quadrillion" on a call
LONG_DIGITS = 7  # a bare digit string this long is an identifier (phone, account, confirmation number)

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


# --- spelling numbers -------------------------------------------------------------------------

def _spell_digits(digits: str) -> str:
    """Digit by digit, "0" as "zero": how identifiers are read back to a caller."""
    return " ".join(_ONES[ord(c) - 48] for c in digits if "0" <= c <= "9")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        tens, unit = divmod(rest, 10)
        parts.append(_ONES[rest] if rest < 20 else _TENS[tens] + (f"-{_ONES[unit]}" if unit else ""))
    return " ".join(parts)


def cardinal(n: int) -> str:
    """US style, no "and", hyphenated tens ("one hundred twenty-five"); from CARDINAL_LIMIT on,
    digit by digit rather than inventing scale words."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= CARDINAL_LIMIT:
        return _spell_digits(str(n))
    if n == 0:
        return "zero"
    parts = []
    for value, name in _SCALES:
        count, n = divmod(n, value)
        if count:
            parts.append(f"{_below_1000(count)} {name}")
    if n:
        parts.append(_below_1000(n))
    return " ".join(parts)


def _ordinalise(words: str) -> str:
    """Turn the last word of a spelt number into its ordinal ("twenty-one" -> "twenty-first")."""
    head, last = re.match(r"(.*?)([a-z]+)$", words).groups()
    if last in _ORDINAL_IRREGULAR:
        return head + _ORDINAL_IRREGULAR[last]
    return head + (last[:-1] + "ieth" if last.endswith("y") else last + "th")


def ordinal(n: int) -> str:
    """"first", "twenty-second", "one hundredth"."""
    return _ordinalise(cardinal(n))


def _int_words(digits: str) -> str:
    """Cardinal for a digit string, never calling int() on one too long to be a quantity."""
    return cardinal(int(digits)) if len(digits.lstrip("0")) <= 15 else _spell_digits(digits)


def _decimal_words(digits: str, frac: str | None) -> str:
    """Decimals read their fraction digit by digit ("three point one four"), as people do."""
    return _int_words(digits) + (f" point {_spell_digits(frac)}" if frac else "")


def _year(n: int) -> str:
    """Years in pairs: 1999 "nineteen ninety-nine", 1905 "nineteen oh five", 1900 "nineteen
    hundred"; 2000-2009 as "two thousand five", which is what Americans say."""
    if 2000 <= n <= 2009:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' if low < 10 else ''}{cardinal(low)}"


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


# --- helpers for substitutions ----------------------------------------------------------------

def _fit(m: re.Match[str], words: str) -> str:
    """Pad a replacement with spaces where it would otherwise glue onto a letter ("MP3" -> "MP three")."""
    s, start, end = m.string, m.start(), m.end()
    left = " " if start and s[start - 1].isalnum() else ""
    right = " " if end < len(s) and s[end].isalnum() else ""
    return f"{left}{words}{right}"


_SENTENCE_ENDED = re.compile(r"\s*$|\s+[A-Z]")


def _ends_sentence(s: str, pos: int) -> bool:
    """Whether an abbreviation's final "." (ending at pos) was also the full stop: end of text,
    or a capital follows. Then the expansion keeps the "." so the voice still stops there."""
    return _SENTENCE_ENDED.match(s, pos) is not None


def _period_if_end(m: re.Match[str], had_period: bool) -> str:
    return "." if had_period and _ends_sentence(m.string, m.end()) else ""


# --- abbreviations and symbols ----------------------------------------------------------------

_EXPANSIONS = {"mr": "Mister", "mrs": "Missus", "ms": "Miz", "dr": "Doctor", "jr": "Junior", "sr": "Senior",
               "e.g": "for example", "i.e": "that is", "etc": "et cetera", "vs": "versus"}
_KEEPS_FULL_STOP = {"jr", "sr", "etc"}  # these end sentences; titles and e.g./vs. never do
# Titles with a period in any case; without one only "Mr Smith" style (so "MS Word" stays) or
# before a number, whose spelling may start with a capital ("Mr 2026-01-15" -> "January ...").
_ABBREV_RE = re.compile(
    r"(?<![^\W\d_])(?:(?P<dotted>[Mm][Rr][Ss]?|M[Ss]|[Dd][Rr]|[JjSs][Rr]|(?i:e\.g|i\.e|etc|vs))\."
    r"|(?P<bare>Mrs|Mr|Ms|Dr)(?=\s+[A-Z0-9]))")
_ST_RE = re.compile(r"(?<![^\W\d_])St(?![^\W\d_])(?P<dot>\.?)")
_NAME_FOLLOWS = re.compile(r"[ \t]+[A-Z]")
_AMP_RE = re.compile(r"&(?:amp;)?")
_HASH_RE = re.compile(r"#\s?(?=[0-9])")


def _abbrev(m: re.Match[str]) -> str:
    written = m["dotted"] or m["bare"]
    key = written.lower()
    full_stop = key in _KEEPS_FULL_STOP and _ends_sentence(m.string, m.end())
    words = _EXPANSIONS[key] if written[0].isupper() else _EXPANSIONS[key].lower()  # "dr." makes no new capital
    return _fit(m, words + ("." if full_stop else ""))


def _address_word_before(s: str, pos: int) -> bool:
    """Is the word before pos a street name or number ("5th", "Main" mid-sentence)?"""
    head = s[:pos]
    stripped = head.rstrip()
    if not stripped or len(stripped) == len(head):
        return False
    word = stripped.rsplit(None, 1)[-1].lstrip("\"'([{")
    if any("0" <= c <= "9" for c in word):
        return True
    if not word[:1].isupper():
        return False
    before = stripped[: len(stripped) - len(word)].rstrip().rstrip("\"'([{")
    return bool(before) and before[-1] not in ".!?:"  # a capital that merely starts the sentence is no name


def _saint_or_street(m: re.Match[str]) -> str:
    """"St." is Saint before a capitalised word ("St. Louis", "visit St. Mary's") unless the word
    before it names a street ("5th St. Then", "Main St. Louis"); everything else is Street."""
    s = m.string
    if _NAME_FOLLOWS.match(s, m.end()) and not _address_word_before(s, m.start()):
        return _fit(m, "Saint")
    return _fit(m, "Street" + _period_if_end(m, bool(m["dot"])))


def _symbols(text: str) -> str:
    text = _ABBREV_RE.sub(_abbrev, text)
    text = _ST_RE.sub(_saint_or_street, text)
    text = _AMP_RE.sub(lambda m: _fit(m, "and"), text)
    return _HASH_RE.sub(lambda m: _fit(m, "number"), text)


# --- dates -------------------------------------------------------------------------------------

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_ISO_DATE_RE = re.compile(
    r"(?<![\w.\-])(?P<y>[0-9]{4})-(?P<m>0[1-9]|1[0-2])-(?P<d>0[1-9]|[12][0-9]|3[01])(?![\w\-]|\.[0-9])")


def _iso_date(m: re.Match[str]) -> str:
    """Calendar tools hand the agent "2026-01-15"; say "January fifteenth, twenty twenty-six"."""
    year = int(m["y"])
    spoken_year = _year(year) if 1100 <= year <= 2099 else cardinal(year)
    return _fit(m, f"{_MONTHS[int(m['m']) - 1]} {ordinal(int(m['d']))}, {spoken_year}")


def _dates(text: str) -> str:
    return _ISO_DATE_RE.sub(_iso_date, text)


# --- phone numbers ----------------------------------------------------------------------------

_PLUS_PHONE_RE = re.compile(r"(?<![\w+])\+[0-9]+(?:[ .\-]\(?[0-9]+\)?|\([0-9]+\))*")
_NANP_RE = re.compile(
    r"(?<![\w+(.\-])(?:1[ .\-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}(?![0-9]|[.\-][0-9])")
_GROUPED_RE = re.compile(r"(?<![\w+.\-])[0-9]{3,5}(?:[.\-][0-9]{3,5})+(?![0-9]|[.\-][0-9])")
_ZERO_LEAD_RE = re.compile(r"(?<![\w+.\-])0[0-9]{2,4}(?: [0-9]{3,4}){1,3}(?![0-9]|[.\-][0-9])")


def _phone(m: re.Match[str]) -> str:
    """Digit by digit, a comma (a short pause) between the groups as written."""
    raw = m.group(0)
    groups = re.findall(r"[0-9]+", raw)
    if not 7 <= sum(map(len, groups)) <= 15:
        return raw
    return _fit(m, ("plus " if raw.startswith("+") else "") + ", ".join(map(_spell_digits, groups)))


def _grouped_phone(m: re.Match[str]) -> str:
    """"555-1234", "0800-123-456"; not "1999-2001" (two groups must be 3+4) nor a 3-part decimal."""
    raw = m.group(0)
    seps = set(re.findall(r"[.\-]", raw))
    groups = re.findall(r"[0-9]+", raw)
    if len(seps) != 1 or (len(groups) == 2 and (seps == {"."} or list(map(len, groups)) != [3, 4])):
        return raw
    return _phone(m)


def _phones(text: str) -> str:
    text = _PLUS_PHONE_RE.sub(_phone, text)
    text = _NANP_RE.sub(_phone, text)
    text = _GROUPED_RE.sub(_grouped_phone, text)
    return _ZERO_LEAD_RE.sub(_phone, text)


# --- money ------------------------------------------------------------------------------------

_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
               "£": ("pound", "pounds", "penny", "pence"), "¥": ("yen", "yen", None, None)}
_SCALE_ABBR = {"k": "thousand", "m": "million", "mn": "million", "bn": "billion"}
_AMOUNT = r"(?=\.?[0-9])(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)?(?:\.(?P<frac>[0-9]+))?"
_MONEY_RE = re.compile(
    r"(?:(?<![\w.,\-−])(?P<neg>[-−]))?(?P<sym>[$€£¥]) ?(?P<neg2>[-−])?" + _AMOUNT
    + r"(?: ?(?P<scale>(?i:thousand|million|billion|trillion))\b|(?P<abbr>[kKmM]|[bBmM][nN])\b)?")
_MONEY_AFTER_RE = re.compile(r"(?<![\w.,\-−])(?P<neg>[-−])?" + _AMOUNT + r" ?(?P<sym>[$€£¥])")


def _money(m: re.Match[str]) -> str:
    """"$12.50" twelve dollars and fifty cents, "$0.99" ninety-nine cents, "$3.5 million" three
    point five million dollars; more than two decimals are read as a decimal amount."""
    g = m.groupdict()
    one, many, sub_one, sub_many = _CURRENCIES[g["sym"]]
    sign = "minus " if g["neg"] or g.get("neg2") else ""
    digits, frac = (g["int"] or "0").replace(",", ""), g["frac"]
    scale = (g.get("scale") or "").lower() or _SCALE_ABBR.get((g.get("abbr") or "").lower())
    if scale:
        return _fit(m, f"{sign}{_decimal_words(digits, frac)} {scale} {many}")
    whole = int(digits) if len(digits) <= 15 else None
    if frac is None or len(frac) > 2 or sub_one is None:
        unit = one if frac is None and whole == 1 else many
        return _fit(m, f"{sign}{_decimal_words(digits, frac)} {unit}")
    cents = int(frac.ljust(2, "0"))
    parts = []
    if whole != 0 or cents == 0:
        parts.append(f"{_int_words(digits)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return _fit(m, sign + " and ".join(parts))


def _moneys(text: str) -> str:
    return _MONEY_AFTER_RE.sub(_money, _MONEY_RE.sub(_money, text))


# --- times ------------------------------------------------------------------------------------

_AMPM = r"(?P<ampm>[aApP])\.? ?[mM](?P<dot>\.)?(?!\w)"
_CLOCK_RE = re.compile(r"(?<![0-9:.,])(?P<h>[0-9]{1,2}):(?P<m>[0-5][0-9])(?![0-9]|:[0-9])(?: ?" + _AMPM + ")?")
_HOUR_RE = re.compile(r"(?<![0-9:.,])(?P<h>1[0-2]|0?[1-9]) ?" + _AMPM)


def _time_words(hour: int, minute: int, ampm: str | None) -> str:
    """12-hour reading: "nine o'clock", "three thirty p m", "ten oh five a m", "twelve noon";
    a 24-hour time is converted ("14:05" is "two oh five p m"), as a US caller would hear it."""
    suffix = ampm.lower() if ampm and 1 <= hour <= 12 else None
    if hour == 0 or hour > 12:
        suffix, hour = ("a" if hour < 12 else "p"), hour % 12 or 12
    if minute == 0 and hour == 12 and suffix:
        return "twelve noon" if suffix == "p" else "twelve midnight"
    spoken = cardinal(hour)
    if minute:
        spoken += f" {'oh ' if minute < 10 else ''}{cardinal(minute)}"
    elif not suffix:
        spoken += " o'clock"
    return f"{spoken} {suffix} m" if suffix else spoken


def _clock(m: re.Match[str]) -> str:
    hour = int(m["h"])
    if hour > 23:
        return m.group(0)
    return _fit(m, _time_words(hour, int(m["m"]), m["ampm"]) + _period_if_end(m, bool(m["dot"])))


def _hour(m: re.Match[str]) -> str:
    return _fit(m, _time_words(int(m["h"]), 0, m["ampm"]) + _period_if_end(m, bool(m["dot"])))


def _times(text: str) -> str:
    return _HOUR_RE.sub(_hour, _CLOCK_RE.sub(_clock, text))


# --- ordinals, decades, ranges, plain numbers -------------------------------------------------

_DECADE_RE = re.compile(r"(?<![\w'])'?(?P<n>[0-9]{2}|[0-9]{4})s(?!\w)")
_ORDINAL_RE = re.compile(r"(?<![\w.,])(?P<n>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:st|nd|rd|th)(?!\w)", re.IGNORECASE)
_RANGE_RE = re.compile(r"(?<![\w.,\-−])(?P<a>[0-9]+)[-–](?P<b>[0-9]+)(?![\w\-–]|[.,][0-9])")
_NUMBER_RE = re.compile(
    r"(?:(?<![\w.,\-−+])(?P<sign>[-−+])(?=\.?[0-9]))?"
    r"(?:(?P<int>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.(?P<frac>[0-9]+))?|(?<![\w.])\.(?P<lfrac>[0-9]+))"
    r"(?P<pct> ?%)?")


def _decade(m: re.Match[str]) -> str:
    """"90s", "'90s" nineties; "1990s" nineteen nineties. Anything else is left to later rules."""
    n = int(m["n"])
    if len(m["n"]) == 2 and n >= 10 and n % 10 == 0:
        return _fit(m, _plural(cardinal(n)))
    if len(m["n"]) == 4 and 1100 <= n <= 2099 and n % 10 == 0:
        return _fit(m, _plural(_year(n)))
    return m.group(0)


def _ordinal(m: re.Match[str]) -> str:
    return _fit(m, _ordinalise(_int_words(m["n"].replace(",", ""))))


def _number(m: re.Match[str]) -> str:
    """Cardinals and decimals, except: bare 7+ digit strings and ones with a leading zero are
    identifiers (digit by digit), and a bare 4-digit 1100-2099 is a year."""
    digits, frac = m["int"], m["frac"]
    if digits is None:
        words = f"point {_spell_digits(m['lfrac'])}"
    else:
        plain = "," not in digits and frac is None and not m["sign"] and not m["pct"]
        if plain and (len(digits) >= LONG_DIGITS or (len(digits) > 1 and digits[0] == "0")):
            words = _spell_digits(digits)
        elif plain and len(digits) == 4 and 1100 <= int(digits) <= 2099:
            words = _year(int(digits))
        else:
            words = _decimal_words(digits.replace(",", ""), frac)
    sign = {"": "", "+": "plus "}.get(m["sign"] or "", "minus ")
    return _fit(m, sign + words + (" percent" if m["pct"] else ""))


def _numbers(text: str) -> str:
    text = _DECADE_RE.sub(_decade, text)
    text = _ORDINAL_RE.sub(_ordinal, text)
    text = _RANGE_RE.sub(lambda m: f"{m['a']} to {m['b']}", text)
    return _NUMBER_RE.sub(_number, text)


def for_speech(text: str) -> str:
    """Written text -> what a TTS voice should say; the result holds no ASCII digits.

    Order matters: abbreviations first (St. needs "5th" still in digits), then the patterns that
    own their digits (ISO dates, phone numbers, money, times) before ordinals and plain numbers.
    """
    for step in (_symbols, _dates, _phones, _moneys, _times, _numbers):
        text = step(text)
    return text


# --- spoken numbers to digits -----------------------------------------------------------------

def _lexicon() -> dict[str, tuple[str, int, bool]]:
    """word -> (kind, value, is_ordinal), cardinal and ordinal spellings both."""
    entries: dict[str, tuple[str, int]] = {}
    for value in range(1, 20):
        entries[_ONES[value]] = ("unit" if value < 10 else "teen", value)
    for value in range(20, 100, 10):
        entries[_TENS[value // 10]] = ("tens", value)
    entries["hundred"] = ("hundred", 100)
    for value, name in _SCALES:
        entries[name] = ("scale", value)
    lexicon = {word: (kind, value, False) for word, (kind, value) in entries.items()}
    lexicon.update({_ordinalise(word): (kind, value, True) for word, (kind, value) in entries.items()})
    return lexicon


_LEXICON = _lexicon()
_ZEROS = {"zero", "oh", "o"}
_CONNECTORS = {"and", "point", "double", "triple"}
_MAX_RUN = 64  # lexemes looked at per run: keeps a pathological input linear
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|[0-9]+|\s+|.", re.DOTALL)


def _candidate(token: str) -> bool:
    low = token.lower()
    return token.isascii() and (token.isdigit() or low in _LEXICON or low in _ZEROS or low in _CONNECTORS)


def _digit_of(lexeme: str) -> str | None:
    """The single digit a lexeme stands for ("five", "oh", "7"), else None."""
    if lexeme in _ZEROS:
        return "0"
    if lexeme.isdigit():
        return lexeme if len(lexeme) == 1 else None
    kind, value, is_ordinal = _LEXICON.get(lexeme, ("", 0, True))
    return str(value) if kind == "unit" and not is_ordinal else None


def _suffix(n: int) -> str:
    if n % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _read_cardinal(lex: list[str], k: int) -> tuple[str, int, bool] | None:
    """Longest well-formed number from lex[k]: "two thousand twenty six" is one number,
    "nineteen ninety" is two (a teen cannot take tens). Returns (digits, next index, ordinal)."""
    total, group, last, top, j = 0, 0, None, 10**18, k
    while j < len(lex):
        entry = _LEXICON.get(lex[j])
        if entry is None:
            following = _LEXICON.get(lex[j + 1], ("",))[0] if j + 1 < len(lex) else ""
            if lex[j] == "and" and last in ("hundred", "scale") and following in ("unit", "teen", "tens"):
                last, j = "and", j + 1
                continue
            break
        kind, value, is_ordinal = entry
        if is_ordinal and last is None:  # "first", "second" alone are words, not numbers
            break
        if kind == "unit" and last in (None, "tens", "hundred", "scale", "and"):
            group += value
        elif kind in ("teen", "tens") and last in (None, "hundred", "scale", "and"):
            group += value
        elif kind == "hundred" and last in ("unit", "teen") and group < 100 and (group < 10 or total == 0):
            group *= 100  # "nineteen hundred", "twenty five hundred"
        elif kind == "scale" and last in ("unit", "teen", "tens", "hundred") and value < top and 0 < group < 1000:
            total, group, top = total + group * value, 0, value
        else:
            break
        last, j = kind, j + 1
        if is_ordinal:
            n = total + group
            return f"{n}{_suffix(n)}", j, True
    if last is None or last == "and":
        return None
    return str(total + group), j, False


def _read_chunk(lex: list[str], k: int) -> tuple[str, int, bool] | None:
    word = lex[k]
    if word.isdigit():
        return word, k + 1, False
    if word in _ZEROS:
        return "0", k + 1, False
    if word in ("double", "triple") and k + 1 < len(lex) and _digit_of(lex[k + 1]):
        return _digit_of(lex[k + 1]) * (2 if word == "double" else 3), k + 2, False
    return _read_cardinal(lex, k)


def _read_run(lex: list[str]) -> tuple[str, int]:
    """Numbers said back to back are concatenated: "nineteen ninety nine" -> "1999",
    "five five five" -> "555". A decimal or ordinal ends the run."""
    out, k = "", 0
    while k < len(lex):
        chunk = _read_chunk(lex, k)
        if chunk is None:
            break
        text, k, final = chunk
        if not final and k + 1 < len(lex) and lex[k] == "point" and _digit_of(lex[k + 1]):
            frac, k = "", k + 1
            while k < len(lex) and _digit_of(lex[k]):
                frac, k = frac + _digit_of(lex[k]), k + 1
            text, final = f"{text}.{frac}", True
        out += text
        if final:
            break
    return out, k


def _run_at(tokens: list[str], i: int, alone: bool) -> tuple[str, int] | None:
    """(digits, index after the run) for the number run starting at tokens[i], or None to keep it."""
    positions, j = [], i
    while j < len(tokens) and _candidate(tokens[j]) and len(positions) < _MAX_RUN:
        positions.append(j)
        j += 1
        if j < len(tokens) and (tokens[j] == "-" or tokens[j].isspace()):
            j += 1
    lex = [tokens[p].lower() for p in positions]
    digits, used = _read_run(lex)
    if not used:
        return None
    words = [w for w in lex[:used] if not w.isdigit()]
    if not words and (used < 2 or len(digits) < LONG_DIGITS):
        return None  # digits as ASR wrote them: only a long split-up run (a phone number) is joined
    if used == 1 and words and (words[0] in _ZEROS - {"zero"} or (words[0] == "one" and not alone)):
        return None  # "oh" is an interjection, "one" a pronoun ("one of them"), unless it is all that was said
    return digits, positions[used - 1] + 1


def to_digits(text: str) -> str:
    """Spoken numbers in an ASR transcript -> digits, everything else untouched.

    Number words (and digit groups) separated only by spaces or hyphens form a run, read as
    numbers said back to back and concatenated. "and" joins only after hundred/thousand; "oh"
    is 0 only inside a run; "double"/"triple" repeat the next digit; "point" makes a decimal;
    an ordinal word ends a run ("twenty second" -> "22nd") but never starts one. Already-digit
    groups are joined only when the run has 7+ digits ("555 123 4567" -> "5551234567").
    """
    tokens = _TOKEN_RE.findall(text)
    alone = sum(1 for t in tokens if t[0].isalnum()) == 1
    out, i = [], 0
    while i < len(tokens):
        run = _run_at(tokens, i, alone) if _candidate(tokens[i]) else None
        if run is None:
            out.append(tokens[i])
            i += 1
        else:
            out.append(run[0])
            i = run[1]
    return "".join(out)


# --- WER scoring ------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def _strip_punctuation(text: str) -> str:
    """Punctuation, symbols, controls -> space (hyphens and slashes included, so "ill-disposed"
    is two words); format characters (ZWJ/ZWNJ) vanish; apostrophes stay inside words."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "'" or category[0] in "LMN":
            out.append(ch)
        elif category != "Cf":
            out.append(" ")
    return _STRAY_APOSTROPHE.sub(" ", "".join(out))


def for_wer(text: str) -> str:
    """The ASR scoring normaliser: NFKC, numbers/money/times spelt as for_speech says them,
    lowercase, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    return " ".join(_strip_punctuation(for_speech(text).lower()).split())
