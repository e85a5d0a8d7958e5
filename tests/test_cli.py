"""The command line: every subcommand answers --help, and help never loads torch."""

import json
import subprocess
import sys

import pytest

from chatedit import cli

SUBCOMMANDS = [["chat"], ["train", "builtin"], ["train", "field"], ["train", "second-predictor"], ["bench", "builtin"], ["bench", "edit"], ["bench", "parse"], ["sheet"], ["serve"], ["replay"], ["parse"], ["train"], ["bench"]]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w))
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*words, "--help"])
    assert exit_info.value.code == 0
    assert "usage: chatedit" in capsys.readouterr().out


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from chatedit import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'gradio', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_parse_prints_the_calls_and_reply_for_a_fresh_session(capsys):
    assert cli.main(["parse", "make her smile a bit more and add thin specs"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["calls"] == [{"name": "edit_attribute", "args": {"attribute": "smiling", "change": 1}},
                            {"name": "edit_attribute", "args": {"attribute": "eyeglasses", "target": 2}}]
    assert cli.main(["parse", "put a hat on him"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["calls"] == [] and "hat" in out["reply"]


def test_parse_jsonl_answers_every_line_in_order(tmp_path, capsys):
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"text": "undo twice"}\n\n{"text": "shave him", "id": 7}\n{"text": "a new face, seed 12"}\n')
    assert cli.main(["parse", "--jsonl", str(requests)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["calls"] for line in lines] == [
        [{"name": "undo", "args": {"steps": 2}}],
        [{"name": "edit_attribute", "args": {"attribute": "beard", "target": 0}}],
        [{"name": "new_face", "args": {"seed": 12}}],
    ]


def test_parse_rejects_bad_input_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "smile"}\nnot json\n')
    assert cli.main(["parse", "--jsonl", str(bad)]) == 1
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert cli.main(["parse", "smile", "--llm", "gpt-99"]) == 1
    assert "unknown chat model 'gpt-99'" in capsys.readouterr().err


REPLAY_SCRIPT = """
name: glasses
start: {seed: 4}
turns:
  - user: add thick glasses
    expect: {degrees: {eyeglasses: 3}}
  - user: remove the glasses
    expect: {degrees: {eyeglasses: 5}}
"""


@pytest.fixture
def replay_script(tmp_path, monkeypatch):
    """A two-turn script (the second turn fails its expectation) replayed on the fake world."""
    from fakes import OpenWorld

    import chatedit.agent
    from chatedit.agent import Agent
    from chatedit.editor import Editor
    from chatedit.rules_model import RulesChatModel

    monkeypatch.setattr(chatedit.agent, "build_agent",
                        lambda backend, llm: Agent(Editor(OpenWorld()), RulesChatModel()))
    script = tmp_path / "glasses.yaml"
    script.write_text(REPLAY_SCRIPT)
    return script


def test_replay_shows_progress_on_stderr_and_keeps_stdout_the_result(replay_script, tmp_path, capsys):
    assert cli.main(["replay", str(replay_script), "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"FAIL {replay_script}:7 'remove the glasses': eyeglasses is 0, expected 5",
                                "1 passed, 1 failed"]
    assert "replay: 100%" in err and "1/1" in err and "script" in err
    assert "glasses:" in err and "1/2" in err and "turn" in err and "remove the glasses" in err  # turn 2 under way
    assert "FAIL" not in err and "passed" not in err


def test_replay_quiet_leaves_stderr_empty(replay_script, tmp_path, capsys):
    assert cli.main(["replay", str(replay_script), "--out", str(tmp_path / "out"), "--quiet", "--check"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "1 passed, 1 failed" and err == ""


@pytest.mark.parametrize("words", [["replay", "x", "--out", "o"], ["train", "builtin"], ["train", "field"],
                                   ["train", "second-predictor"], ["bench", "builtin"], ["bench", "edit"],
                                   ["bench", "parse"], ["bench", "serve"], ["sheet"]], ids=lambda w: " ".join(w))
def test_every_long_command_takes_quiet(words):
    parser = cli.build_parser()
    assert parser.parse_args([*words, "--quiet"]).quiet and not parser.parse_args(words).quiet
