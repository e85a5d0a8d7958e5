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
    # 1. exactly one edit, of the labelled attribute
    edits = [c for c in calls if c.get("name") == "edit_attribute"]
    attribute = item["attribute"]
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


def _accuracy(hits: list[bool]) -> float:
    return round(sum(hits) / len(hits), 4) if hits else 0.0


def run(parse_calls: Callable[[str], list[dict]], path: Path | str | None = None, progress: bool = False) -> dict:
    """Grade ``parse_calls`` (text -> tool calls for a fresh session) on every benchmark item
    (``progress``: a bar over them on stderr)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"benchmark file not found: {path or BENCHMARK} (looked from {Path.cwd()})")
    items = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_attr, by_kind, by_both = defaultdict(list), defaultdict(list), defaultdict(lambda: defaultdict(list))
    failures = []
    for item in bar(items, "bench parse", show=progress, unit="request"):
        calls = parse_calls(item["text"])
        ok, why = grade(item, calls)
        by_attr[item["attribute"]].append(ok)
        by_kind[item["kind"]].append(ok)
        by_both[item["attribute"]][item["kind"]].append(ok)
        if not ok and len(failures) < MAX_FAILURES:
            failures.append({**{k: item[k] for k in ("text", "attribute", "kind", "target", "direction", "amount")},
                             "calls": calls, "why": why})
    correct = sum(sum(v) for v in by_attr.values())
    return {
        "items": len(items),
        "correct": correct,
        "accuracy": _accuracy([ok for v in by_attr.values() for ok in v]),
        "per_attribute": {a: _accuracy(v) for a, v in by_attr.items()},
        "per_kind": {k: _accuracy(v) for k, v in by_kind.items()},
        "per_attribute_kind": {a: {k: _accuracy(v) for k, v in kinds.items()} for a, kinds in by_both.items()},
        "per_attribute_kind_items": {a: {k: len(v) for k, v in kinds.items()} for a, kinds in by_both.items()},
        "failures": failures,
    }


def markdown(result: dict) -> str:
    """A table of accuracy per attribute and kind, then the first failures."""
    kinds = ("target", "change")
    counts = result.get("per_attribute_kind_items", {})
    lines = ["| attribute | " + " | ".join(kinds) + " | all |", "|---" * (len(kinds) + 2) + "|"]
    for attr, acc in result["per_attribute"].items():
        cells = [f"{result['per_attribute_kind'][attr].get(k, 0.0):.1%} ({counts.get(attr, {}).get(k, 0)})" for k in kinds]
        lines.append(f"| {attr} | " + " | ".join(cells) + f" | {acc:.1%} |")
    cells = [f"{result['per_kind'].get(k, 0.0):.1%}" for k in kinds]
    lines.append("| **all** | " + " | ".join(cells) + f" | **{result['accuracy']:.1%}** |")
    lines += ["", f"{result['correct']} of {result['items']} requests parsed correctly."]
    if result["failures"]:
        lines += ["", "First failures:", ""]
        for f in result["failures"]:
            lines.append(f"- `{f['text']}` ({f['attribute']}, {f['kind']}): {f['calls']} - {f['why']}")
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
