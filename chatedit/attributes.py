"""The attribute vocabulary, read from ``chatedit/prompts/attributes.yaml``.

Everything that is sized by the attributes (model heads, benchmark tables, parser
vocabularies) asks this module, so a new attribute is a data change plus training.
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


@lru_cache(maxsize=1)
def load_attributes() -> tuple[Attribute, ...]:
    text = resources.files("chatedit.prompts").joinpath("attributes.yaml").read_text()
    data = yaml.safe_load(text)
    attributes = []
    for entry in data["attributes"]:
        degrees = tuple(entry["degrees"])
        if len(degrees) != NUM_DEGREES:
            raise ValueError(
                f"attribute {entry['name']!r} has {len(degrees)} degree descriptions, expected {NUM_DEGREES}"
            )
        attributes.append(Attribute(name=entry["name"], label=entry["label"], degrees=degrees))
    return tuple(attributes)


def attribute_names() -> tuple[str, ...]:
    return tuple(a.name for a in load_attributes())


def attribute_index(name: str) -> int:
    names = attribute_names()
    if name not in names:
        raise ValueError(f"unknown attribute {name!r}; known attributes are {', '.join(names)}")
    return names.index(name)
