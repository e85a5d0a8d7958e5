"""How well does a parser turn single edit requests into the right ``edit_attribute`` call?

The data is ``shared/benchmarks/talk_to_edit_requests.jsonl`` (862 requests from Talk-to-Edit's
templates, labelled with an attribute and a target degree or a change). A parse is graded by what
it would do to a face, as the benchmark's README says:

1. take the ``edit_attribute`` calls; the item fails if any edits another attribute (each item's
   text is about its labelled attribute only, so another attribute is one it does not mention) or
   if there is not exactly one for the labelled attribute, or that call's arguments are invalid;
2. resolve the call from a start degree ``s``: target items start at 5 when the labelled target is
   at most 2, else at 0; change items start at 1 for a positive change, 4 for a negative one.
   ``target=t`` resolves to t, ``change=c`` to clip(s + c, 0, 5);
3. a target item passes when the resolved degree is the target; a definite change when it moves
   from s in the labelled direction and lies within one degree of clip(s + direction * amount);
   an indefinite change when it moves from s in the labelled direction.

Other sets in the same format (``chatedit bench parse --set FILE``: ``benchmarks/heldout_requests.jsonl``
and ``benchmarks/dev_requests.jsonl``, issue #33) add ``describe`` items, questions about the face: one
passes when the calls include a ``describe`` call (of the labelled attribute, or of any or none when
the label's attribute is null) and no ``edit_attribute`` call. Their optional ``phrasing`` and
``voice`` fields get accuracies of their own.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Callable

from chatedit.attributes import MAX_DEGREE
from chatedit.progress import bar

logger = logging.getLogger(__name__)

BENCHMARK = Path("shared") / "benchmarks" / "talk_to_edit_requests.jsonl"
MAX_FAILURES = 30


def find_benchmark(start: Path | None = None) -> Path | None:
    """The benchmark file in ``start`` (default: the current directory) or a parent, or next to the repository."""
    start = (start or Path.cwd()).resolve()
    repo = Path(__file__).resolve().parents[1]
    for folder in [start, *start.parents, repo.parent]:
        if (folder / BENCHMARK).is_file():
            return folder / BENCHMARK
    return None


DEFAULT_PATH = find_benchmark()


def _clip(degree: int) -> int:
    return min(max(degree, 0), MAX_DEGREE)


def _start(item: dict) -> int:
    if item["kind"] == "target":
        return MAX_DEGREE if item["target"] <= 2 else 0
    return 1 if item["direction"] > 0 else MAX_DEGREE - 1


def _resolve(args: dict, start: int) -> int | None:
    """The degree a call's arguments lead to from ``start``, or None when they are not a valid call."""
    target, change = args.get("target"), args.get("change")
    if (target is None) == (change is None):
        return None
    if target is not None:
        return target if isinstance(target, int) and 0 <= target <= MAX_DEGREE else None
    return _clip(start + change) if isinstance(change, int) and change and abs(change) <= MAX_DEGREE else None


def grade(item: dict, calls: list[dict]) -> tuple[bool, str]:
    """(passed, why) for one labelled item and the calls a parser produced for its text."""
    edits = [c for c in calls if c.get("name") == "edit_attribute"]
    attribute = item["attribute"]
    if item["kind"] == "describe":
        return _grade_describe(attribute, calls, edits)

    # 1. exactly one edit, of the labelled attribute
    others = sorted({c.get("args", {}).get("attribute") for c in edits} - {attribute}, key=str)
    if others:
        return False, f"edits an attribute the text does not mention: {', '.join(map(str, others))}"
    if len(edits) != 1:
        return False, f"{len(edits)} edit_attribute calls for {attribute}, expected 1"

    # 2. resolve from the start degree
    start = _start(item)
    resolved = _resolve(edits[0].get("args", {}), start)
    if resolved is None:
        return False, f"invalid arguments {edits[0].get('args')}"

    # 3. compare with the label
    if item["kind"] == "target":
        ok = resolved == item["target"]
        return ok, f"from {start} reaches {resolved}, label target {item['target']}"
    moved = (resolved - start) * item["direction"] > 0
    if item["amount"] is None:
        return moved, f"from {start} reaches {resolved}, label direction {item['direction']:+d}"
    expected = _clip(start + item["direction"] * item["amount"])
    ok = moved and abs(resolved - expected) <= 1
    return ok, f"from {start} reaches {resolved}, label {expected} (+-1)"


def _grade_describe(attribute: str | None, calls: list[dict], edits: list[dict]) -> tuple[bool, str]:
    """A question about the face: a describe call (of ``attribute`` when the label names one) and no edit."""
    if edits:
        return False, f"a question, but {len(edits)} edit_attribute call(s)"
    asked = [(c.get("args") or {}).get("attribute") for c in calls if c.get("name") == "describe"]
    if not asked:
        return False, "no describe call"
    if attribute is None or attribute in asked:
        return True, f"describe({', '.join(map(str, asked))})"
    return False, f"describe({', '.join(map(str, asked))}), label {attribute}"


def _accuracy(hits: list[bool]) -> float:
    return round(sum(hits) / len(hits), 4) if hits else 0.0


WHOLE_FACE = "face"  # the per-attribute key of describe items about the whole face (attribute null)
GROUPS = ("phrasing", "voice")  # optional item fields with accuracies of their own


def load(path: Path | str | None = None) -> tuple[Path, list[dict]]:
    """The items of a requests file (default: the shared Talk-to-Edit set)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"benchmark file not found: {path or BENCHMARK} (looked from {Path.cwd()})")
    return path, [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def run(parse_calls: Callable[[str], list[dict]], path: Path | str | None = None, progress: bool = False) -> dict:
    """Grade ``parse_calls`` (text -> tool calls for a fresh session) on every item of ``path``
    (default: the shared Talk-to-Edit set; ``progress``: a bar over them on stderr). Accuracy overall,
    per attribute, per kind, and per phrasing and per voice where the items have those fields."""
    path, items = load(path)
    by_attr, by_kind, by_both = defaultdict(list), defaultdict(list), defaultdict(lambda: defaultdict(list))
    by_group = {g: defaultdict(list) for g in GROUPS}
    failures = []
    for item in bar(items, "bench parse", show=progress, unit="request"):
        calls = parse_calls(item["text"])
        ok, why = grade(item, calls)
        attribute = item["attribute"] if item["attribute"] is not None else WHOLE_FACE
        by_attr[attribute].append(ok)
        by_kind[item["kind"]].append(ok)
        by_both[attribute][item["kind"]].append(ok)
        for g in GROUPS:
            if item.get(g) is not None:
                by_group[g][item[g]].append(ok)
        if not ok and len(failures) < MAX_FAILURES:
            fields = ("text", "attribute", "kind", "target", "direction", "amount", *GROUPS)
            failures.append({**{k: item[k] for k in fields if k in item}, "calls": calls, "why": why})
    correct = sum(sum(v) for v in by_attr.values())
    result = {
        "file": str(path),
        "items": len(items),
        "correct": correct,
        "accuracy": _accuracy([ok for v in by_attr.values() for ok in v]),
        "per_attribute": {a: _accuracy(v) for a, v in by_attr.items()},
        "per_kind": {k: _accuracy(v) for k, v in by_kind.items()},
        "per_attribute_kind": {a: {k: _accuracy(v) for k, v in kinds.items()} for a, kinds in by_both.items()},
        "per_attribute_kind_items": {a: {k: len(v) for k, v in kinds.items()} for a, kinds in by_both.items()},
    }
    for g in GROUPS:
        if by_group[g]:
            result[f"per_{g}"] = {k: _accuracy(v) for k, v in by_group[g].items()}
            result[f"per_{g}_items"] = {k: len(v) for k, v in by_group[g].items()}
    result["failures"] = failures
    return result


def markdown(result: dict) -> str:
    """A table of accuracy per attribute and kind, tables per phrasing and voice when the set has
    them, then the first failures."""
    kinds = ("target", "change") + (("describe",) if "describe" in result["per_kind"] else ())
    counts = result.get("per_attribute_kind_items", {})
    lines = ["| attribute | " + " | ".join(kinds) + " | all |", "|---" * (len(kinds) + 2) + "|"]
    for attr, acc in result["per_attribute"].items():
        cells = [f"{result['per_attribute_kind'][attr].get(k, 0.0):.1%} ({counts.get(attr, {}).get(k, 0)})" for k in kinds]
        lines.append(f"| {attr} | " + " | ".join(cells) + f" | {acc:.1%} |")
    cells = [f"{result['per_kind'].get(k, 0.0):.1%}" for k in kinds]
    lines.append("| **all** | " + " | ".join(cells) + f" | **{result['accuracy']:.1%}** |")
    for g in GROUPS:
        if f"per_{g}" in result:
            lines += ["", f"| {g} | accuracy | items |", "|---|---|---|"]
            for k, acc in result[f"per_{g}"].items():
                lines.append(f"| {k} | {acc:.1%} | {result[f'per_{g}_items'][k]} |")
    lines += ["", f"{result['correct']} of {result['items']} requests parsed correctly."]
    if result["failures"]:
        lines += ["", "First failures:", ""]
        for f in result["failures"]:
            tags = ", ".join(str(f[k]) for k in ("attribute", "kind", *GROUPS) if k in f)
            lines.append(f"- `{f['text']}` ({tags}): {f['calls']} - {f['why']}")
    return "\n".join(lines)


@lru_cache(maxsize=None)
def chat_model_parse_calls(llm="rules"):
    """A ``parse_calls`` function: the tool calls of the chat model's first answer in a fresh session."""
    from chatedit.agent import first_response
    from chatedit.llms import make_chat_model

    model = make_chat_model(llm)
    return lambda text: first_response(model, text)["calls"]


def rules_parse_calls(text: str) -> list[dict]:
    """The built-in chat model (``--llm rules``) as a ``parse_calls`` function."""
    return chat_model_parse_calls("rules")(text)
