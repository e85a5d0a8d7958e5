"""Scene requests: "put her on a beach", "show him in a suit", "change the background to a forest".

Read only where the backend draws scenes (the agent binds ``set_scene``): elsewhere "on a beach"
is nothing the face editor can do, and the rest of the message is read as always. A message may
hold a scene and edits ("put her on a beach and make her smile"): ``split_scene`` returns the
scene and the text left for the attribute parser.
"""

from __future__ import annotations

import re

PERSON = r"(?:her|him|them|me|us|the (?:person|face|man|woman|guy|girl|boy|lady|portrait|picture|photo))"
PLACE = r"(?:on|in|at|by|under|inside|outside|near|beside|against|among|in front of|on top of|wearing|dressed (?:as|in))"
POLITE = r"(?:(?:please|now|ok|okay|and|then|also|so)\s+)*(?:(?:can|could|would|will) you\s+)?(?:please\s+)?"
VERB = r"(?:put|place|show|draw|set|move|take|send|picture|paint|render|drop|stick|dress)"
BACKDROP = r"(?:background|backdrop|scene|setting|surroundings|location|place)"

SCENE_PATTERNS = (
    # "put her on a beach", "could you show him in a suit", "dress her in a red coat"
    re.compile(rf"^{POLITE}{VERB}\s+{PERSON}\s+(?P<scene>{PLACE}\b.+)$", re.I),
    # "change the background to a forest", "make the backdrop a city at night", "set the scene in Paris"
    re.compile(rf"^{POLITE}(?:change|make|set|turn|switch|swap)\s+(?:the\s+|her\s+|his\s+|their\s+)?{BACKDROP}"
               rf"\s+(?:to be\s+|to\s+|into\s+|for\s+|with\s+)?(?P<scene>.+)$", re.I),
    # "a beach background", "give her a forest background"
    re.compile(rf"^{POLITE}(?:give\s+{PERSON}\s+|use\s+)?(?P<scene>(?:a|an|the)\s+.+?)\s+{BACKDROP}$", re.I),
    # "i want her on a beach", "i'd like him in a suit", "let's see her at the beach"
    re.compile(rf"^(?:i want|i'd like|i would like|let's see|let me see|lets see)\s+{PERSON}\s+(?P<scene>{PLACE}\b.+)$", re.I),
)
FACE_WORDS = re.compile(r"\b(?:glasses|spectacles|specs|sunglasses|eyeglasses|beard|moustache|mustache|stubble|"
                        r"goatee|bangs|fringe|smil\w*|grin\w*|older|younger|age|aged|years? old)\b", re.I)
JOINS = re.compile(r"\s*(?:[,;.]\s*(?:and\s+|then\s+)?|\s(?:and then|and|then)\s)\s*")
EDGES = " .,!?;:'\""
FILLER = re.compile(r"^(?:please|thanks|thank you|now|ok|okay|cheers|pls|thx)?[ .,!?]*$", re.I)


def read_scene(clause: str) -> str | None:
    """The scene a clause asks for, in its own words ("on a beach"), or None."""
    text = " ".join(clause.replace("’", "'").split()).strip(EDGES)
    text = re.sub(r"\s+(?:please|instead|now|for me|thanks|thank you)$", "", text, flags=re.I).strip(EDGES)
    if FACE_WORDS.search(text):  # "put her in glasses" is an edit of the face, not a scene
        return None
    for pattern in SCENE_PATTERNS:
        match = pattern.match(text)
        if match:
            scene = match.group("scene").strip(EDGES)
            if pattern in SCENE_PATTERNS[1:3] and not re.match(PLACE + r"\b", scene, re.I):
                scene = f"with {scene} in the background"  # "a forest" → "with a forest in the background"
            return scene or None
    return None


def split_scene(text: str) -> tuple[str | None, str]:
    """(the scene asked for, the rest of the message): the first clause that reads as a scene is
    taken out; without one, (None, text)."""
    clauses = [c for c in JOINS.split(text) if c.strip()]
    for i, clause in enumerate(clauses):
        scene = read_scene(clause)
        if scene is not None:
            rest = " and ".join(c.strip() for j, c in enumerate(clauses) if j != i and not FILLER.match(c.strip()))
            return scene, rest
    return None, text


__all__ = ["read_scene", "split_scene"]
