"""The command line: every subcommand answers --help, and help never loads torch."""

import subprocess
import sys

import pytest

from chatedit import cli

SUBCOMMANDS = [["train", "builtin"], ["train", "field"], ["bench", "builtin"], ["bench", "edit"], ["bench", "parse"], ["sheet"], ["serve"], ["replay"], ["parse"], ["train"], ["bench"]]


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


def test_commands_not_built_yet_say_so(capsys):
    assert cli.main(["serve"]) == 2
    assert "not available yet" in capsys.readouterr().err
