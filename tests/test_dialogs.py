"""Every conversation in tests/dialogs/ replays on the shipped built-in models with all expectations met."""

from pathlib import Path

from chatedit.replay import find_scripts, replay

DIALOGS = Path(__file__).parent / "dialogs"


def test_the_dialog_scripts_cover_every_intent():
    assert len(find_scripts([DIALOGS])) >= 12


def test_every_dialog_script_passes(tmp_path):
    lines = []
    passed, failed, broken = replay([DIALOGS], tmp_path, echo=lines.append)
    assert (failed, broken) == (0, 0), "\n".join(lines)
    assert passed >= 40
