"""Per-session dialog state: the face's history with undo/redo, what is in focus, the open question.

A session owns one ``DialogState``; nothing in it is shared between sessions. Every entry of the
history is a whole face (its latent code and measured degrees), so undo and redo never recompute
anything, and an edit that fails part-way leaves the history untouched. ``to_json`` /
``from_json`` round-trip everything, latents included; the store keeps the parts apart instead
(``header``, the entries, the turns: ``from_parts`` puts them back together) so that a save writes
only what changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch


@dataclass(frozen=True)
class Entry:
    """One face in the history."""

    latent: torch.Tensor  # (1, w_dim) float32, on the CPU
    degrees: dict[str, int]  # as the steering predictor reads this face
    action: str  # what made it: "start", "new face (seed 7)", "smiling 1→3", "reset"
    face: int  # which face of the session it belongs to (new_face starts the next one)
    asked: str = ""  # the person's words for the turn that made it ("" when unknown)

    def to_dict(self) -> dict:
        return {"latent": self.latent.flatten().tolist(), "shape": list(self.latent.shape),
                "degrees": dict(self.degrees), "action": self.action, "face": self.face, "asked": self.asked}

    @classmethod
    def from_dict(cls, data: dict) -> "Entry":
        latent = torch.tensor(data["latent"], dtype=torch.float32).view(data["shape"])
        return cls(latent, {k: int(v) for k, v in data["degrees"].items()}, str(data["action"]), int(data["face"]),
                   str(data.get("asked", "")))


@dataclass
class Turn:
    """One exchange, as logged: what the person said, the calls made, what was answered."""

    user: str
    calls: list[dict]
    reply: str
    degrees: dict[str, int]


@dataclass
class DialogState:
    entries: list[Entry] = field(default_factory=list)
    index: int = -1  # the entry shown now; entries after it are the redo branch
    focus: str | None = None  # attribute last edited or discussed
    last_change: int | None = None  # signed degrees the last edit moved the focus attribute
    question: dict | None = None  # the call the assistant last proposed, e.g. {"name": "edit_attribute", "args": ...}
    turns: list[Turn] = field(default_factory=list)
    edits: int = 0  # successful edits so far (varies the follow-up questions)
    seed: int = 0  # the session's own seed: new faces asked for without one are drawn from it
    offered: list[str] = field(default_factory=list)  # "face:attribute" offered unasked: each once per face

    # ----------------------------------------------------------------- reading

    @property
    def current(self) -> Entry:
        if self.index < 0:
            raise LookupError("the session has no face yet")
        return self.entries[self.index]

    @property
    def has_face(self) -> bool:
        return self.index >= 0

    @property
    def original(self) -> Entry:
        """The first entry of the face shown now: what ``reset`` returns to."""
        face = self.current.face
        return next(e for e in self.entries if e.face == face)

    def can_undo(self) -> int:
        return max(self.index, 0)

    def can_redo(self) -> int:
        return len(self.entries) - 1 - self.index

    def earlier_degrees(self) -> dict[str, int]:
        """For each attribute of the face shown, the degree it had before it last changed (history
        up to the entry shown, this face only); attributes that never changed are left out."""
        shown = self.current
        earlier = {}
        for entry in reversed(self.entries[:self.index]):
            if entry.face != shown.face:
                break
            for name, degree in entry.degrees.items():
                if name not in earlier and degree != shown.degrees.get(name):
                    earlier[name] = degree
        return earlier

    # ----------------------------------------------------------------- changing

    def push(self, entry: Entry) -> None:
        """Shows ``entry`` next; whatever could have been redone is dropped."""
        del self.entries[self.index + 1:]
        self.entries.append(entry)
        self.index = len(self.entries) - 1

    def move(self, steps: int) -> int:
        """Undo (negative) or redo (positive) up to ``|steps|`` entries; returns how many were moved."""
        target = min(max(self.index + steps, 0), len(self.entries) - 1)
        moved = abs(target - self.index)
        self.index = target
        return moved

    def next_face_id(self) -> int:
        return max((e.face for e in self.entries), default=-1) + 1

    # ----------------------------------------------------------------- serialising

    def header(self) -> dict:
        """Everything but the history and the turn log: a few small fields, as JSON-ready values."""
        return {"index": self.index, "focus": self.focus, "last_change": self.last_change, "question": self.question,
                "edits": self.edits, "seed": self.seed, "offered": list(self.offered)}

    @classmethod
    def from_parts(cls, header: dict, entries: list[Entry], turns: list[Turn]) -> "DialogState":
        """The state from ``header()``, its entries and its turns; refuses an index outside the history."""
        state = cls(
            entries=list(entries), index=int(header["index"]), focus=header["focus"],
            last_change=header["last_change"], question=header["question"], edits=int(header.get("edits", 0)),
            seed=int(header.get("seed", 0)), offered=[str(o) for o in header.get("offered", [])], turns=list(turns),
        )
        if not -1 <= state.index < len(state.entries) or (state.entries and state.index < 0):
            raise ValueError(f"state index {state.index} does not point into its {len(state.entries)} entries")
        return state

    def to_json(self) -> str:
        return json.dumps({**self.header(), "entries": [e.to_dict() for e in self.entries],
                           "turns": [asdict(t) for t in self.turns]})

    @classmethod
    def from_json(cls, text: str) -> "DialogState":
        data = json.loads(text)
        return cls.from_parts(data, [Entry.from_dict(e) for e in data["entries"]], [Turn(**t) for t in data["turns"]])
