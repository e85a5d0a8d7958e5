"""The parse benchmark's grading rule, on hand-made items, and the rules parser on the real file."""

import json

import pytest

from chatedit.bench_parse import DEFAULT_PATH, find_benchmark, grade, markdown, rules_parse_calls, run


def item(attribute="smiling", kind="change", target=None, direction=None, amount=None, text="x"):
    return {"text": text, "attribute": attribute, "kind": kind, "target": target, "direction": direction,
            "amount": amount, "source": "template"}


def edit(attribute="smiling", **args):
    return {"name": "edit_attribute", "args": {"attribute": attribute, **args}}


TARGET_LOW = item(kind="target", target=1)      # starts at 5
TARGET_HIGH = item(kind="target", target=4)     # starts at 0
UP_BY_3 = item(direction=1, amount=3)           # starts at 1, label 4
DOWN_BY_5 = item(direction=-1, amount=5)        # starts at 4, label 0
UP_SOME = item(direction=1)                     # indefinite, starts at 1
DOWN_SOME = item(direction=-1)                  # indefinite, starts at 4


@pytest.mark.parametrize("label,calls,passes", [
    # target items: the resolved degree must be the target
    (TARGET_LOW, [edit(target=1)], True),
    (TARGET_LOW, [edit(target=2)], False),
    (TARGET_LOW, [edit(change=-4)], True),           # 5 - 4 = 1
    (TARGET_HIGH, [edit(change=4)], True),           # 0 + 4 = 4
    (TARGET_HIGH, [edit(change=3)], False),
    # definite changes: right direction and within one degree of the label
    (UP_BY_3, [edit(change=3)], True),
    (UP_BY_3, [edit(change=2)], True),               # 3, label 4
    (UP_BY_3, [edit(change=1)], False),              # 2, label 4
    (UP_BY_3, [edit(target=5)], True),
    (UP_BY_3, [edit(change=-1)], False),
    (DOWN_BY_5, [edit(target=0)], True),
    (DOWN_BY_5, [edit(change=-3)], True),            # 1, label 0
    (DOWN_BY_5, [edit(change=-2)], False),
    # indefinite changes: any move in the labelled direction
    (UP_SOME, [edit(change=1)], True),
    (UP_SOME, [edit(target=2)], True),
    (UP_SOME, [edit(target=1)], False),              # no move from 1
    (UP_SOME, [edit(target=0)], False),
    (DOWN_SOME, [edit(target=0)], True),
    (DOWN_SOME, [edit(change=2)], False),
    # exactly one edit, of the labelled attribute, with valid arguments
    (UP_SOME, [], False),
    (UP_SOME, [edit("age", change=1)], False),                         # the wrong attribute
    (UP_SOME, [edit(change=1), edit("eyeglasses", target=2)], False),  # an extra, unmentioned edit
    (UP_SOME, [edit(change=1), edit(change=1)], False),
    (UP_SOME, [edit(change=1, target=3)], False),
    (UP_SOME, [edit(change=0)], False),
    (UP_SOME, [edit(target=9)], False),
    (UP_SOME, [edit(change=1), {"name": "describe", "args": {}}], True),   # other tools do not count
])
def test_grading_rule(label, calls, passes):
    assert grade(label, calls)[0] is passes


def test_two_labels_of_one_sentence_pass_with_either_reading():
    # "Remove all the bangs." is labelled both target 0 and change -5
    as_target = item("bangs", kind="target", target=0)
    as_change = item("bangs", direction=-1, amount=5)
    for calls in ([edit("bangs", target=0)], [edit("bangs", change=-5)]):
        assert grade(as_target, calls)[0] and grade(as_change, calls)[0]


def test_run_reports_accuracy_per_attribute_and_kind(tmp_path):
    path = tmp_path / "requests.jsonl"
    items = [item(kind="target", target=0, text="serious"), item(direction=1, text="happier"),
             item("age", direction=1, amount=1, text="older"), item("age", kind="target", target=5, text="old")]
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    answers = {"serious": [edit(target=0)], "happier": [edit(change=1)], "older": [edit("age", change=1)],
               "old": [edit("age", target=4), edit("beard", target=0)]}

    result = run(lambda text: answers[text], path)

    assert (result["items"], result["correct"], result["accuracy"]) == (4, 3, 0.75)
    assert result["per_attribute"] == {"smiling": 1.0, "age": 0.5}
    assert result["per_kind"] == {"target": 0.5, "change": 1.0}
    assert result["per_attribute_kind"]["age"] == {"change": 1.0, "target": 0.0}
    assert [f["text"] for f in result["failures"]] == ["old"]
    assert result["failures"][0]["calls"] == answers["old"]
    table = markdown(result)
    assert "| attribute | target | change | all |" in table and "| age |" in table and "75.0%" in table


def test_find_benchmark_looks_in_parents(tmp_path):
    (tmp_path / "shared" / "benchmarks").mkdir(parents=True)
    (tmp_path / "shared" / "benchmarks" / "talk_to_edit_requests.jsonl").write_text("")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_benchmark(nested) == tmp_path / "shared" / "benchmarks" / "talk_to_edit_requests.jsonl"


def test_missing_file_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        run(rules_parse_calls, tmp_path / "nowhere.jsonl")


@pytest.mark.skipif(DEFAULT_PATH is None, reason="shared/benchmarks/talk_to_edit_requests.jsonl not found "
                                                 "in this directory, its parents or next to the repository")
def test_rules_parser_scores_at_least_98_percent_on_the_benchmark():
    result = run(rules_parse_calls, DEFAULT_PATH)
    assert result["items"] == 862
    assert result["accuracy"] >= 0.98, markdown(result)
