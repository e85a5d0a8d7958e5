"""The parse benchmark's grading rule, on hand-made items, and the rules parser on the real file."""

import json
from pathlib import Path

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


# --------------------------------------------------------------------------- describe items, --set, breakdowns (#33)

def question(attribute=None, text="x", phrasing="face_question", voice="terse"):
    return {"text": text, "attribute": attribute, "kind": "describe", "target": None, "direction": None,
            "amount": None, "phrasing": phrasing, "voice": voice, "source": "dev"}


def describe(attribute=None):
    return {"name": "describe", "args": {} if attribute is None else {"attribute": attribute}}


@pytest.mark.parametrize("label,calls,passes", [
    # about one attribute: a describe call of that attribute, and no edit
    (question("smiling"), [describe("smiling")], True),
    (question("smiling"), [describe("age")], False),
    (question("smiling"), [describe()], False),
    (question("smiling"), [describe("age"), describe("smiling")], True),
    (question("smiling"), [describe("smiling"), edit(change=1)], False),   # a question is not an edit
    (question("smiling"), [edit(change=1)], False),
    (question("smiling"), [], False),
    # about the whole face: any describe call, and no edit
    (question(None), [describe()], True),
    (question(None), [describe("beard")], True),
    (question(None), [describe(), edit("beard", target=0)], False),
    (question(None), [{"name": "undo", "args": {}}], False),
])
def test_describe_items_pass_on_a_describe_call_and_no_edit(label, calls, passes):
    assert grade(label, calls)[0] is passes


def test_run_reports_accuracy_per_phrasing_and_voice(tmp_path):
    path = tmp_path / "set.jsonl"
    items = [{**item(kind="target", target=0, text="grumpy"), "phrasing": "mood", "voice": "terse"},
             {**item("beard", kind="target", target=5, text="wizard"), "phrasing": "extreme", "voice": "chatty"},
             {**item("age", direction=-1, text="de-age"), "phrasing": "phrasal", "voice": "terse"},
             question("age", text="how old?", voice="researcher"),
             question(None, text="the face?", voice="chatty")]
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    answers = {"grumpy": [edit(target=0)], "wizard": [edit("beard", target=4)], "de-age": [edit("age", change=-1)],
               "how old?": [describe("age")], "the face?": [edit("smiling", change=1)]}

    result = run(lambda text: answers[text], path)

    assert (result["items"], result["correct"], result["accuracy"]) == (5, 3, 0.6)
    assert result["file"] == str(path)
    assert result["per_kind"] == {"target": 0.5, "change": 1.0, "describe": 0.5}
    assert result["per_attribute"] == {"smiling": 1.0, "beard": 0.0, "age": 1.0, "face": 0.0}
    assert result["per_phrasing"] == {"mood": 1.0, "extreme": 0.0, "phrasal": 1.0, "face_question": 0.5}
    assert result["per_phrasing_items"] == {"mood": 1, "extreme": 1, "phrasal": 1, "face_question": 2}
    assert result["per_voice"] == {"terse": 1.0, "chatty": 0.0, "researcher": 1.0}
    assert [f["text"] for f in result["failures"]] == ["wizard", "the face?"]
    assert result["failures"][1]["phrasing"] == "face_question" and result["failures"][1]["attribute"] is None
    table = markdown(result)
    assert "| attribute | target | change | describe | all |" in table
    assert "| phrasing | accuracy | items |" in table and "| face_question | 50.0% | 2 |" in table
    assert "| voice | accuracy | items |" in table and "| chatty | 0.0% | 2 |" in table
    assert "(None, describe, face_question, chatty)" in table


def test_sets_without_phrasing_or_voice_keep_the_old_report(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps(item(direction=1, text="happier")) + "\n")
    result = run(lambda text: [edit(change=1)], path)
    assert "per_phrasing" not in result and "per_voice" not in result
    table = markdown(result)
    assert table.splitlines()[0] == "| attribute | target | change | all |" and "phrasing" not in table


def test_cli_bench_parse_grades_the_file_given_with_set(tmp_path, monkeypatch, capsys):
    from chatedit import bench_parse, cli

    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(question("beard", text="any beard?")) + "\n"
                    + json.dumps({**item(direction=1, text="smile"), "phrasing": "plain", "voice": "terse"}) + "\n")
    fake = {"any beard?": [describe("beard")], "smile": [edit(change=-1)]}
    monkeypatch.setattr(bench_parse, "chat_model_parse_calls", lambda llm=None: fake.__getitem__)

    assert cli.main(["bench", "parse", "--set", str(path), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["file"], result["items"], result["correct"]) == (str(path), 2, 1)
    assert result["per_voice"] == {"terse": 0.5} and result["per_kind"] == {"describe": 1.0, "change": 0.0}
    assert cli.main(["bench", "parse", "--file", str(path), "--quiet"]) == 0      # the old spelling still works
    assert "| voice | accuracy | items |" in capsys.readouterr().out


# --------------------------------------------------------------------------- the #33 request sets themselves

SETS = Path(__file__).resolve().parents[1] / "benchmarks"
PHRASINGS = {"question_wish", "description", "phrasal", "mood", "extreme", "swap", "face_question", "plain"}
VOICES = {"terse", "chatty", "non_native", "researcher"}


@pytest.mark.parametrize("name,source,least,per_kind", [("heldout_requests.jsonl", "heldout", 160, 15),
                                                        ("dev_requests.jsonl", "dev", 110, 12)])
def test_request_sets_are_well_formed_and_cover_every_kind(name, source, least, per_kind):
    from chatedit.attributes import attribute_names

    items = [json.loads(line) for line in (SETS / name).read_text().splitlines() if line.strip()]
    assert len(items) >= least
    assert len({i["text"] for i in items}) == len(items)
    for i in items:
        assert set(i) == {"text", "attribute", "kind", "target", "direction", "amount", "phrasing", "voice", "source"}
        assert i["source"] == source and i["phrasing"] in PHRASINGS and i["voice"] in VOICES
        assert (i["kind"] == "describe") == (i["phrasing"] == "face_question"), i
        if i["kind"] == "describe":
            assert i["attribute"] in {None, *attribute_names()} and i["target"] is i["direction"] is i["amount"] is None
        elif i["kind"] == "target":
            assert i["attribute"] in attribute_names() and i["target"] in range(6), i
            assert i["direction"] is i["amount"] is None
        else:
            assert i["kind"] == "change" and i["attribute"] in attribute_names() and i["target"] is None, i
            assert i["direction"] in (1, -1) and i["amount"] in (None, 1, 2, 3, 4, 5), i
    counts = {p: sum(i["phrasing"] == p for i in items) for p in PHRASINGS}
    assert all(n >= per_kind for p, n in counts.items() if p != "plain"), counts
    assert {i["voice"] for i in items} == VOICES
    assert {i["attribute"] for i in items} == {None, *attribute_names()}


def test_dev_and_heldout_share_no_sentence():
    texts = [{json.loads(line)["text"].lower() for line in (SETS / n).read_text().splitlines() if line.strip()}
             for n in ("heldout_requests.jsonl", "dev_requests.jsonl")]
    assert not texts[0] & texts[1]
