"""Intents and FAQ answers by nearest example: cosine similarity of sentence embeddings.

Both classes embed their example phrasings once, at construction; a query is one embedding
(about 5 ms) and a matrix-vector product. Vectors from ``Embedder`` are unit length, so the dot
product is the cosine.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

__all__ = ["IntentMatcher", "IntentMatch", "KnowledgeBase", "KnowledgeMatch", "TextEmbedder"]


class TextEmbedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...

    def embed_one(self, text: str) -> np.ndarray: ...


class IntentMatch(NamedTuple):
    """``name`` is None when the best score is under the threshold (or the margin under
    ``min_margin``); ``score`` (the best intent's, accepted or not) is reported either way, for
    logs and tuning. ``margin`` is the best intent's score minus the runner-up intent's (1.0 with
    one intent). ``IntentMatcher.scores`` gives every intent's score."""

    name: str | None
    score: float
    margin: float


class KnowledgeMatch(NamedTuple):
    id: str | None
    score: float


def _best_per_group(scores: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Max score per group (intent / entry) over its examples."""
    out = np.full(n_groups, -np.inf, dtype=np.float32)
    np.maximum.at(out, groups, scores)
    return out


def _examples(pairs: list[tuple[str, list[str]]], what: str) -> tuple[list[str], list[str], np.ndarray]:
    names, texts, owner = [], [], []
    for name, phrases in pairs:
        if isinstance(phrases, str):
            phrases = [phrases]
        phrases = [p for p in phrases if p and p.strip()]
        if not phrases:
            raise ValueError(f"{what} {name!r} has no example phrases")
        if name in names:
            raise ValueError(f"{what} {name!r} is given twice")
        owner += [len(names)] * len(phrases)
        names.append(name)
        texts += phrases
    return names, texts, np.asarray(owner, dtype=np.int64)


class IntentMatcher:
    """``match(text) -> IntentMatch(name | None, score, margin)``.

    ``intents`` maps an intent name to example phrasings; an utterance's score for an intent is
    its highest cosine to one of that intent's examples. Below ``threshold`` (or with a margin to
    the runner-up below ``min_margin``) the answer is None: "I did not understand" beats a guess.
    """

    def __init__(self, embedder: TextEmbedder, intents: dict[str, list[str]], threshold: float = 0.5,
                 min_margin: float = 0.0):
        self.embedder = embedder
        self.threshold = float(threshold)
        self.min_margin = float(min_margin)
        self.names, texts, self._owner = _examples(list(intents.items()), "intent")
        self._vectors = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)

    def scores(self, vector: np.ndarray) -> dict[str, float]:
        """Every intent's score for one embedded utterance."""
        best = _best_per_group(self._vectors @ vector, self._owner, len(self.names))
        return {name: float(s) for name, s in zip(self.names, best)}

    def match_vector(self, vector: np.ndarray) -> IntentMatch:
        if not self.names:
            return IntentMatch(None, 0.0, 0.0)
        best = _best_per_group(self._vectors @ vector, self._owner, len(self.names))
        order = np.argsort(best)[::-1]
        top = float(best[order[0]])
        margin = top - float(best[order[1]]) if len(order) > 1 else 1.0
        name = self.names[order[0]]
        accepted = top >= self.threshold and margin >= self.min_margin
        return IntentMatch(name if accepted else None, top, margin)

    def match(self, text: str) -> IntentMatch:
        if not text or not text.strip():
            return IntentMatch(None, 0.0, 0.0)
        return self.match_vector(self.embedder.embed_one(text))


class KnowledgeBase:
    """FAQ lookup: ``entries`` are ``(id, questions, answer)``; ``lookup(text) -> (id | None, score)``
    with the entry whose closest question is nearest, None under ``threshold``."""

    def __init__(self, embedder: TextEmbedder, entries: list[tuple[str, list[str], str]],
                 threshold: float = 0.55):
        self.embedder = embedder
        self.threshold = float(threshold)
        self._answers: dict[str, str] = {}
        pairs = []
        for entry_id, questions, answer in entries:
            pairs.append((entry_id, questions))
            self._answers[entry_id] = answer
        self.ids, texts, self._owner = _examples(pairs, "knowledge entry")
        self._vectors = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)

    def answer(self, entry_id: str) -> str:
        return self._answers[entry_id]

    def lookup_vector(self, vector: np.ndarray) -> KnowledgeMatch:
        if not self.ids:
            return KnowledgeMatch(None, 0.0)
        best = _best_per_group(self._vectors @ vector, self._owner, len(self.ids))
        i = int(np.argmax(best))
        score = float(best[i])
        return KnowledgeMatch(self.ids[i] if score >= self.threshold else None, score)

    def lookup(self, text: str) -> KnowledgeMatch:
        if not text or not text.strip():
            return KnowledgeMatch(None, 0.0)
        return self.lookup_vector(self.embedder.embed_one(text))
