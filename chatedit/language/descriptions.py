"""A look described in words, matched against each degree's own description in ``attributes.yaml``.

When a clause names an attribute and nothing else in it was understood ("glasses with slender
frames", "a beard that is long and full"), its words are compared with the six descriptions of
that attribute's degrees ("thin-framed glasses", "a full long beard"): each word is reduced to a
plain form ("framed" -> "frame", "showing" -> "show"), read as the description word it is a
synonym of (``description_words`` in ``lexicon_wordnet.yaml``, from WordNet, and in
``lexicon.yaml``), and weighted by how few of the six degrees use it. The degree with the
highest score wins (between equals, the one with fewest words not said); a tie is no answer.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from chatedit.attributes import load_attributes

from .vocabulary import Vocabulary

STOP = frozenset({"a", "an", "the", "of", "with", "to", "in", "their", "or", "and", "over", "down", "whole",
                  "very"})   # "very" is an intensity, said of any degree ("forehead very free")
MIN_SCORE = 0.5   # below this the words say too little about a degree (log(6/5) ~ 0.18 for a common word)


def plain(word: str) -> str:
    """A word's plain form, enough to compare descriptions: framed, frames -> frame; showing -> show."""
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[:-len(suffix)] + repl
    return word


@lru_cache(maxsize=1)
def _table() -> dict[str, tuple[tuple[frozenset[str], ...], dict[str, float]]]:
    """attribute -> (plain words of each degree's description, weight of each word)."""
    table = {}
    for attribute in load_attributes():
        degrees = tuple(frozenset(plain(w) for w in re.findall(r"[a-z]+", d.lower()) if w not in STOP)
                        for d in attribute.degrees)
        words = set().union(*degrees)
        weight = {w: math.log(len(degrees) / sum(w in d for d in degrees)) for w in words}
        table[attribute.name] = (degrees, weight)
    return table


def described_degree(words: list[str], attribute: str, vocab: Vocabulary) -> int | None:
    """The degree of ``attribute`` whose description the words match best, or None when none clearly does."""
    degrees, weight = _table()[attribute]
    synonyms = vocab.phrasing.description_words
    said = {plain(synonyms.get(w, w)) for w in words} | {plain(synonyms.get(plain(w), plain(w))) for w in words}
    named = {plain(synonyms.get(w, w)) for w in words if any(r.kind == "name" and r.attribute == attribute
                                                            for r in vocab.lexicon.get((w,), ()))}
    # the best score, from the words that are not the attribute's name ("her expression" says no degree);
    # between equal ones, the description with the fewest words not said ("long" is "a long beard" more
    # than "a full long beard")
    ranked = sorted(((sum(weight[w] for w in (said - named) & d), -len(d - said), i) for i, d in enumerate(degrees)),
                    reverse=True)
    (best, spare, degree), runner_up = ranked[0], ranked[1]
    if best < MIN_SCORE or (best, spare) == runner_up[:2]:
        return None
    return degree
