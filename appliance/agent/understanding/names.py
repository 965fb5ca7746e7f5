"""Which of the recogniser's readings of a name is a name.

Whisper's best reading of a name it has never seen is often a near-miss ("Ploy Adams", "Lisa
Johns", "Priyapadel") while its second reading is right ("Chloe Adams", "Lisa Jones", "Priya
Patel"). A reading made of common given names and surnames is the likelier one, so the flow
asks :func:`likeliest` to choose among them instead of always taking the first.

The lexicon is the US 1990 census name frequency lists (public domain: ~5,500 given names,
~89,000 surnames), as shipped by the ``names`` package on PyPI (MIT). Only the rank of each
name is used. Without the package every reading scores alike and the first one is kept.
"""

from __future__ import annotations

import logging
import math
import re
from functools import lru_cache
from importlib import resources

log = logging.getLogger("appliance.agent")

LISTS = ("dist.female.first", "dist.male.first", "dist.all.last")
UNKNOWN = math.log(100_000)  # a word in no list costs more than the rarest listed name
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@lru_cache(maxsize=1)
def ranks() -> dict[str, int]:
    """Upper-case name -> its best rank in any of the lists (1 = commonest); {} without them."""
    out: dict[str, int] = {}
    try:
        root = resources.files("names")
        for name in LISTS:
            for line in (root / name).read_text(encoding="ascii", errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[3].isdigit():
                    rank = int(parts[3])
                    if rank < out.get(parts[0], rank + 1):
                        out[parts[0]] = rank
    except (ModuleNotFoundError, FileNotFoundError, OSError) as exc:
        log.warning("no name lexicon (the names package: %s): a name is taken as first heard", exc)
    return out


def score(reading: str) -> float:
    """Mean cost of the reading's words as names (lower is likelier); inf for no words."""
    words = _WORD.findall(reading)
    if not words:
        return math.inf
    table = ranks()
    return sum(math.log(table[w.upper()]) if w.upper() in table else UNKNOWN for w in words) / len(words)


def likeliest(readings: list[str]) -> str:
    """The reading most like a name; the first (the recogniser's best) unless another is
    strictly likelier, so equal readings keep the recogniser's order."""
    if not readings:
        return ""
    best, best_cost = readings[0], score(readings[0])
    for other in readings[1:]:
        cost = score(other)
        if cost < best_cost:
            best, best_cost = other, cost
    return best
