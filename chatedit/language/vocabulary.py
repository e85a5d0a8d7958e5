"""The parser's vocabulary, read from ``prompts/language.yaml``: phrases and the roles they play."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from chatedit.attributes import MAX_DEGREE, attribute_names

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- vocabulary


TINT = 2   # the value of a lens role for the tint itself ("remove the tint"), not tinted glasses


@dataclass(frozen=True)
class Role:
    """One meaning of a phrase: ``kind`` plus, for attribute roles, the attribute and a value."""

    kind: str                  # "name" | "degree" | "cmp" | "polar" | "lens" | "intensity" | "followup" | "oos" | grammar key
    attribute: str | None = None
    value: int = 0             # degree, sign or amount
    named: bool = False        # only meaningful when the attribute is named (e.g. "short", "longer")
    thing: str | None = None   # out-of-scope thing


@dataclass(frozen=True)
class Vocabulary:
    lexicon: dict[tuple[str, ...], tuple[Role, ...]]
    canonical: dict[tuple[str, ...], tuple[str, ...]]
    amounts: dict[str, int]
    answers: dict[str, frozenset[tuple[str, ...]]]
    answer_breaks: frozenset[str]   # after a leading "no", words that start a new request
    commands: dict[str, tuple[re.Pattern, ...]]
    numbers: dict[str, int]
    years_attribute: str
    age_years: tuple[tuple[int, int, int], ...]
    age_before: frozenset[str]
    age_after: frozenset[str]
    age_change_before: frozenset[str]
    age_object: tuple[frozenset[str], frozenset[str]]   # "make him 25": (verbs, persons) before an age
    age_to: frozenset[str]      # "age her to 50": words that make "to <number>" an age
    years_off: frozenset[str]   # "take 10 years off": verbs that make a number of years younger
    years_per_degree: float   # "10 years younger": years per degree of change (at least one degree)
    conjunctions: frozenset[str]
    contractions: dict          # {"whole": {...}, "suffixes": {...}, "is_after": [...]}
    skipped: frozenset[str]     # articles and possessives, ignored when matching phrases
    fillers: frozenset[str]     # words that leave "glasses please" a bare name
    not_ages: frozenset[str]
    relative_years: frozenset[str]   # "5 years younger": comparatives of the years attribute
    add_degree: dict[str, int | None]
    lenses: dict[str, tuple[int, int, int]]   # attribute -> (shift, tinted, clear): see ``lens_degree``
    generic_things: frozenset[str]   # out-of-scope things that yield to a more specific one
    keywords: frozenset[str]   # typo-correction targets
    known: frozenset[str]      # words never corrected


def _phrases(items) -> list[tuple[str, ...]]:
    bad = [p for p in items if not isinstance(p, str)]
    if bad:
        raise ValueError(f"language.yaml has non-text phrases {bad!r}; quote YAML words like 'no' and 'off'")
    return [tuple(p.split()) for p in items]


@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    data = yaml.safe_load(resources.files("chatedit.prompts").joinpath("language.yaml").read_text())
    lexicon: dict[tuple[str, ...], list[Role]] = defaultdict(list)

    def add(items, role: Role) -> None:
        for phrase in _phrases(items):
            lexicon[phrase].append(role)

    # 1. attribute roles
    names = attribute_names()
    for name in data["attributes"]:
        if name not in names:
            raise ValueError(f"language.yaml describes attribute {name!r}, not in attributes.yaml ({', '.join(names)})")
    add_degree, lenses = {}, {}
    for name, entry in data["attributes"].items():
        add_degree[name] = entry.get("add")
        add(entry.get("names", []), Role("name", name))
        for named, key in ((False, "degrees"), (True, "named_degrees")):
            for degree, items in (entry.get(key) or {}).items():
                if not 0 <= int(degree) <= MAX_DEGREE:
                    raise ValueError(f"{name}.{key} has degree {degree}, outside 0..{MAX_DEGREE}")
                add(items, Role("degree", name, int(degree), named))
        for named, prefix in ((False, ""), (True, "named_")):
            add(entry.get(prefix + "up") or [], Role("cmp", name, 1, named))
            add(entry.get(prefix + "down") or [], Role("cmp", name, -1, named))
            for word, sign in (entry.get(prefix + "polar") or {}).items():
                add([word], Role("polar", name, int(sign), named))
        if "lenses" in entry:
            lenses[name] = tuple(int(entry["lenses"][k]) for k in ("shift", "tinted", "clear"))
            add(entry["lenses"]["tinted_words"], Role("lens", name, 1))
            add(entry["lenses"]["tint_words"], Role("lens", name, TINT))
            add(entry["lenses"]["clear_words"], Role("lens", name, -1))

    # 2. grammar, intensity, follow-ups, out-of-scope things
    for kind, items in data["grammar"].items():
        add(items, Role(kind))
    for word, amount in data["intensity"].items():
        add([word], Role("intensity", value=int(amount)))
    for key, sign in (("same", 1), ("opposite", -1)):
        add(data["followups"][key], Role("followup", value=sign))
    for thing, items in data["out_of_scope"].items():
        add(items, Role("oos", thing=thing))

    canonical = {p: tuple(str(target).split()) for target, items in data["canonical"].items() for p in _phrases(items)}
    single = {w for phrase in lexicon for w in phrase} | {w for phrase in canonical for w in phrase}
    keyword_source = [p for p, roles in lexicon.items()
                      if any(r.attribute or r.kind in ("add", "remove", "increase", "decrease") for r in roles)]
    keywords = {w for p in keyword_source for w in p if len(w) >= 4 and w.isalpha()}
    keywords |= {"undo", "redo", "reset", "describe", "another", "original"}
    return Vocabulary(
        lexicon={k: tuple(v) for k, v in lexicon.items()},
        canonical=canonical,
        amounts={k: int(v) for k, v in data["amounts"].items()},
        answers={k: frozenset(_phrases(v)) for k, v in data["answers"].items() if k != "breaks"},
        answer_breaks=frozenset(data["answers"].get("breaks", [])),
        commands={k: tuple(re.compile(p) for p in v) for k, v in data["commands"].items()},
        numbers={str(k): int(v) for k, v in data["numbers"].items()},
        years_attribute=data["years_attribute"],
        age_years=tuple(tuple(int(x) for x in row) for row in data["age_years"]),
        age_before=frozenset(data["age_number_before"]),
        age_after=frozenset(data["age_number_after"]),
        age_change_before=frozenset(data["age_change_before"]),
        age_object=(frozenset(data["age_number_object"]["verbs"]), frozenset(data["age_number_object"]["objects"])),
        age_to=frozenset(w for p in _phrases(data["age_number_to"]) for w in p),
        years_per_degree=float(data["years_per_degree"]),
        years_off=frozenset(data["years_off"]),
        conjunctions=frozenset(data["grammar"]["conjunction"]),
        add_degree=add_degree,
        lenses=lenses,
        generic_things=frozenset(data["out_of_scope_generic"]),
        keywords=frozenset(keywords),
        contractions=data["contractions"],
        skipped=frozenset(data["skipped"]),
        fillers=frozenset(data["fillers"]),
        not_ages=frozenset(data["not_ages"]),
        relative_years=frozenset(p[0] for p, roles in lexicon.items() if len(p) == 1 and any(
            r.kind == "cmp" and r.attribute == data["years_attribute"] and not r.named for r in roles)),
        known=frozenset(single | {w for p in _phrases(data["known_words"]) for w in p} | set(data["numbers"])
                        | set(data["skipped"]) | {w for v in data["answers"].values() for p in _phrases(v) for w in p}),
    )


def lens_degree(vocab: Vocabulary, attribute: str, sign: int, current: int | None) -> int:
    """The degree for tinted (``sign`` > 0) or clear lenses (< 0), keeping the frame the glasses have.

    Tinted degrees are their clear frame's plus ``shift``: thin frames (2) tinted are thin-framed
    sunglasses (4). From no glasses (or rimless ones, which have no tinted kind) it is the
    ``tinted`` or ``clear`` degree; glasses that already are what was asked keep their degree.
    ``sign`` == -TINT takes a tint away: clear lenses in the same frame, and nothing else changes.
    """
    shift, tinted, clear = vocab.lenses[attribute]
    dark = current is not None and current >= tinted
    if sign == -TINT:
        return current - shift if dark else current or 0
    if sign > 0:
        return current if dark else tinted if current is None or current + shift < tinted else current + shift
    return current - shift if dark else current or clear
