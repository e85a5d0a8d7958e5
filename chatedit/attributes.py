"""The attribute vocabulary, read from ``chatedit/prompts/attributes.yaml``.

The one source of the attribute list and its order: everything sized or ordered by the attributes
(the renderer's attribute columns, model heads, field files, sliders, benchmark tables, parser
vocabularies) asks this module. What else a new attribute needs (drawing code, wording,
training) is listed in ``docs/attributes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

NUM_DEGREES = 6
MAX_DEGREE = NUM_DEGREES - 1


@dataclass(frozen=True)
class Attribute:
    name: str
    label: str
    degrees: tuple[str, ...]  # one description per degree, 0 … MAX_DEGREE

    def describe(self, degree: int) -> str:
        return self.degrees[degree]


@dataclass(frozen=True)
class Limit:
    """While ``when`` reads degree ``is_``, ``limit`` can be at most ``to`` ("children have no beards")."""

    when: str
    is_: int
    limit: str
    to: int
    because: str  # finishes a sentence: "children have no beards"


def _data() -> dict:
    return yaml.safe_load(resources.files("chatedit.prompts").joinpath("attributes.yaml").read_text())


@lru_cache(maxsize=1)
def load_attributes() -> tuple[Attribute, ...]:
    data = _data()
    attributes = []
    for entry in data["attributes"]:
        if any(entry["name"] == a.name for a in attributes):
            raise ValueError(f"attributes.yaml lists attribute {entry['name']!r} twice")
        degrees = tuple(entry["degrees"])
        if len(degrees) != NUM_DEGREES:
            raise ValueError(
                f"attribute {entry['name']!r} has {len(degrees)} degree descriptions, expected {NUM_DEGREES}"
            )
        attributes.append(Attribute(name=entry["name"], label=entry["label"], degrees=degrees))
    return tuple(attributes)


def attribute_names() -> tuple[str, ...]:
    return tuple(a.name for a in load_attributes())


def in_words(degrees: dict[str, int]) -> str:
    """A face's degrees in words, "a gentle smile, no glasses, …" (what its pictures' alt text says)."""
    return ", ".join(a.degrees[degrees[a.name]] for a in load_attributes() if a.name in degrees)


@lru_cache(maxsize=1)
def load_limits() -> tuple[Limit, ...]:
    names = attribute_names()
    limits = []
    for entry in _data().get("limits") or []:
        limit = Limit(entry["when"], int(entry["is"]), entry["limit"], int(entry["to"]), str(entry["because"]))
        for name in (limit.when, limit.limit):
            if name not in names:
                raise ValueError(f"attributes.yaml: a limit names {name!r}, not an attribute ({', '.join(names)})")
        if not (0 <= limit.is_ <= MAX_DEGREE and 0 <= limit.to <= MAX_DEGREE):
            raise ValueError(f"attributes.yaml: a limit's degrees must be 0 to {MAX_DEGREE}: {entry!r}")
        limits.append(limit)
    return tuple(limits)


def most_allowed(attribute: str, degrees: dict[str, int]) -> tuple[int, str | None]:
    """The highest degree of ``attribute`` the other ``degrees`` allow, and why (None: no limit)."""
    allowed, why = MAX_DEGREE, None
    for limit in load_limits():
        if limit.limit == attribute and degrees.get(limit.when) == limit.is_ and limit.to < allowed:
            allowed, why = limit.to, limit.because
    return allowed, why
