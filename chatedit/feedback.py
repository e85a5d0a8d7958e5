"""The assistant's sentences, from ``prompts/feedback.yaml``: the wording is data, the logic is here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from chatedit.attributes import NUM_DEGREES, attribute_names


@dataclass(frozen=True)
class Feedback:
    data: dict

    def say(self, key: str, **values) -> str:
        """The sentence at a dotted ``key`` ("edit.reached"), filled in with ``values``."""
        node = self.data
        for part in key.split("."):
            node = node[part]
        return node.format(**values)

    def attribute(self, name: str) -> dict:
        return self.data["attributes"][name]

    def state(self, name: str, degree: int) -> str:
        """A present-tense clause for ``name`` at ``degree``: "have a broad smile"."""
        return self.attribute(name)["is"][degree]

    def edit(self, key: str, name: str, degree: int, **values) -> str:
        return self.say(f"edit.{key}", noun=self.attribute(name)["noun"], **_placed(self.state(name, degree)), **values)

    def reached(self, clauses: list[str]) -> str:
        """Several edits that each landed where asked, as one sentence: "They now have a gentle smile
        and wear no glasses." (``clauses`` from ``state``)."""
        placed = _placed(clauses[0])["now"]
        return self.say("edit.reached", now=_listed([placed, *clauses[1:]]))

    def describe(self, degrees: dict[str, int]) -> str:
        return self.say("describe", list=_listed([self.state(n, degrees[n]) for n in attribute_names() if n in degrees]))

    def since_original(self, original: dict[str, int], now: dict[str, int]) -> str:
        """What differs from the face as it started, or "" when nothing does: "Since the original face,
        I changed the bangs and smile: in the original they have no bangs and are laughing."
        """
        changed = [n for n in attribute_names() if n in now and original.get(n) != now[n]]
        if not changed:
            return ""
        return self.say("since_original", nouns=_listed([self.attribute(n)["noun"] for n in changed]),
                        before=_listed([self.state(n, original[n]) for n in changed]))

    def changes(self, before: dict[str, int], after: dict[str, int]) -> str:
        """Clauses for the attributes whose degree differs: "wear rimless glasses and have a faint smile"."""
        return _listed([self.state(n, after[n]) for n in attribute_names() if before.get(n) != after.get(n)])


def _placed(clause: str) -> dict[str, str]:
    """``clause`` as {is}, and with "now", "already" and "still" where English puts them: after
    "are" ("they are now laughing"), before any other verb ("they now have a beard")."""
    verb, _, rest = clause.partition(" ")
    placed = {adverb: f"{verb} {adverb} {rest}" if verb in ("are", "is") else f"{adverb} {clause}"
              for adverb in ("now", "already", "still")}
    return {"is": clause, **placed}


def _listed(clauses: list[str]) -> str:
    if len(clauses) <= 1:
        return "".join(clauses)
    return ", ".join(clauses[:-1]) + (", and " if len(clauses) > 2 else " and ") + clauses[-1]


@lru_cache(maxsize=1)
def load_feedback() -> Feedback:
    data = yaml.safe_load(resources.files("chatedit.prompts").joinpath("feedback.yaml").read_text())
    for name in attribute_names():
        entry = data["attributes"].get(name)
        if entry is None:
            raise ValueError(f"prompts/feedback.yaml has no sentences for attribute {name!r}")
        if len(entry["is"]) != NUM_DEGREES:
            raise ValueError(f"prompts/feedback.yaml: {name!r} needs {NUM_DEGREES} 'is' clauses, has {len(entry['is'])}")
    return Feedback(data)
