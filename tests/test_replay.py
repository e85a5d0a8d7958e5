"""Scripted replays: the script format, the expectation rules, and the files a replay writes."""

import json

import pytest

from chatedit.agent import Agent
from chatedit.editor import Editor
from chatedit.replay import ScriptError, check, load_script, replay, run_script
from chatedit.rules_model import RulesChatModel

from fakes import OpenWorld

DEG = {"bangs": 0, "eyeglasses": 2, "beard": 0, "smiling": 3, "age": 2}


def write(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("rule, now, ok", [
    (3, 3, True), (3, 4, False), (">=2", 2, True), (">=2", 1, False), ("<=1", 1, True), ("<=1", 2, False),
    ("up", 4, True), ("up", 3, False), ("down", 2, True), ("same", 3, True), ("same", 2, False),
    ("start", 1, True), ("start", 3, False),
])
def test_degree_rules(rule, now, ok):
    before, start = dict(DEG), dict(DEG, smiling=1)
    after = dict(DEG, smiling=now)
    assert (check({"degrees": {"smiling": rule}}, before, after, start, [], "", 1.0) == []) == ok


def test_star_covers_the_attributes_the_turn_does_not_name():
    after = dict(DEG, smiling=4, age=3)
    failures = check({"degrees": {"smiling": "up", "*": "same"}}, DEG, after, DEG, [], "", 1.0)
    assert failures == ["age is 3, expected same (before 2, at start 2)"]


def test_calls_reply_and_identity():
    expect = {"calls": ["undo", "edit_attribute"], "reply_matches": "(?i)smile", "identity_min": 0.8}
    assert check(expect, DEG, DEG, DEG, ["edit_attribute", "undo"], "A broad Smile.", 0.9) == []
    failures = check(expect, DEG, DEG, DEG, ["undo"], "Done.", 0.5)
    assert len(failures) == 3 and "identity similarity 0.500 is below 0.8" in failures[2]
    assert check({"calls": []}, DEG, DEG, DEG, ["describe"], "", 1.0)


@pytest.mark.parametrize("text, where, words", [
    ("turns:\n  - user: hi\n    expect: {degrees: {smiling: upp}}\n", ":3", "upp"),
    ("turns:\n  - user: hi\n    expect: {degrees: {hat: 1}}\n", ":3", "hat"),
    ("turns:\n  - user: hi\n    expect: {colour: red}\n", ":3", "colour"),
    ("name: x\nturns: []\n", ":1", "non-empty"),
    ("turns:\n  - user: [hi\n", ":", "YAML"),
    ("start: {seed: 1, image: a.png}\nturns:\n  - user: hi\n", ":1", "start"),
    ("turns:\n  - {user: 5}\n", ":2", "user"),
    ("colour: red\nturns:\n  - user: hi\n", ":1", "colour"),
])
def test_malformed_scripts_name_the_file_line_and_problem(tmp_path, text, where, words):
    path = write(tmp_path, text)
    with pytest.raises(ScriptError) as error:
        load_script(path)
    message = str(error.value)
    assert message.startswith(str(path) + where) and words in message


def replay_agent():
    world = OpenWorld()
    return Agent(Editor(world), RulesChatModel())


SCRIPT = """
name: glasses-and-undo
start: {seed: 4}
turns:
  - user: add thick glasses
    expect: {degrees: {eyeglasses: 3, "*": same}, calls: [edit_attribute], reply_matches: thick}
  - user: a new face please
    expect: {calls: [new_face]}
  - user: undo
    expect: {degrees: {eyeglasses: 3}, calls: [undo]}
  - user: ""
    expect: {degrees: {"*": same}, calls: []}
"""


def test_run_script_writes_transcript_images_gif_and_sheet_and_is_deterministic(tmp_path):
    script = load_script(write(tmp_path, SCRIPT))
    first = run_script(script, replay_agent(), tmp_path / "a")
    second = run_script(script, replay_agent(), tmp_path / "b")
    folder = tmp_path / "a" / "glasses-and-undo"
    saved = json.loads((folder / "transcript.json").read_text())
    assert saved["name"] == "glasses-and-undo" and len(saved["turns"]) == 4
    assert all(t["passed"] for t in saved["turns"]), [t["failures"] for t in saved["turns"]]
    assert {f.name for f in folder.iterdir()} >= {"turn_00.png", "turn_04.png", "conversation.gif", "sheet.png"}
    strip = lambda t: [{k: v for k, v in turn.items() if k != "ms"} for turn in t["turns"]]  # noqa: E731
    assert strip(first) == strip(second)


def test_replay_reports_failures_and_keeps_going_past_a_broken_script(tmp_path, monkeypatch):
    import chatedit.agent

    monkeypatch.setattr(chatedit.agent, "build_agent", lambda backend, llm: replay_agent())
    write(tmp_path, SCRIPT, "a.yaml")
    write(tmp_path, "turns:\n  - user: hi\n    expect: {degrees: {smiling: upp}}\n", "b.yaml")
    write(tmp_path, "turns:\n  - user: remove the glasses\n    expect: {degrees: {eyeglasses: 5}}\n", "c.yaml")
    lines = []
    passed, failed, broken = replay([tmp_path], tmp_path / "out", echo=lines.append)
    assert (passed, failed, broken) == (4, 1, 1)
    assert any(line.startswith("ERROR") and "b.yaml:3" in line for line in lines)
    assert any(line.startswith("FAIL") and "c.yaml:2" in line and "eyeglasses is 0, expected 5" in line for line in lines)
    assert lines[-1] == "4 passed, 1 failed (1 script could not run)"


def test_progress_shows_each_script_and_the_words_of_each_turn_on_stderr_only(tmp_path, monkeypatch, capsys):
    import chatedit.agent

    monkeypatch.setattr(chatedit.agent, "build_agent", lambda backend, llm: replay_agent())
    long_words = "add thick glasses to this face and leave everything else exactly as it was"
    write(tmp_path, SCRIPT.replace("add thick glasses", long_words), "a.yaml")
    quiet_lines, lines = [], []
    counts = replay([tmp_path], tmp_path / "quiet", echo=quiet_lines.append)
    assert capsys.readouterr().err == ""  # the library is silent unless asked

    assert replay([tmp_path], tmp_path / "out", echo=lines.append, progress=True) == counts
    captured = capsys.readouterr()
    assert captured.out == "" and lines == quiet_lines and lines[-1].endswith(" failed")
    assert "replay: 100%" in captured.err and "1/1" in captured.err  # the bar over scripts, finished
    assert "glasses-and-undo:" in captured.err and "turn" in captured.err and "3/4" in captured.err
    assert long_words[:39] + "…" in captured.err and long_words not in captured.err  # the turn's words, cut
