"""Starting a server: one per data directory (a second is refused and told who has it, even after
the first was killed), and what earlier processes left in the temp folder is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from chatedit.cli import main
from chatedit.store import DataDirInUse, SessionStore
from chatedit.ui.server import ServeOptions, clear_temp, prepare

HOLD = """
import sys
from chatedit.store import DataDirLock
lock = DataDirLock(sys.argv[1])
lock.note(host="127.0.0.1", port=7861)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def other_server(tmp_path):
    """Another process holding ``tmp_path`` as its data directory, as a server on port 7861 would."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_second_server_on_the_same_data_dir_is_refused_by_name(tmp_path, other_server, capsys):
    with pytest.raises(DataDirInUse, match=rf"pid {other_server.pid}, 127\.0\.0\.1:7861"):
        prepare(ServeOptions(data_dir=tmp_path))  # refused before any model loads
    assert main(["serve", "--data-dir", str(tmp_path)]) == 1
    said = capsys.readouterr().err
    assert f"pid {other_server.pid}" in said and "another --data-dir" in said

    other_server.send_signal(signal.SIGKILL)  # killed outright: the OS lets go of its lock
    other_server.wait()
    store = SessionStore(tmp_path, exclusive=True)
    assert f'"pid": {os.getpid()}' in (tmp_path / "lock").read_text()
    store.close()


def test_one_process_cannot_open_a_data_dir_twice_and_can_after_closing(tmp_path):
    first = SessionStore(tmp_path, exclusive=True)
    with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
        SessionStore(tmp_path, exclusive=True)
    first.close()
    SessionStore(tmp_path, exclusive=True).close()


def test_temp_files_of_earlier_processes_are_removed(tmp_path):
    tmp = tmp_path / "tmp"
    (tmp / "gradio" / "abc123").mkdir(parents=True)
    (tmp / "gradio" / "abc123" / "edit-path.gif").write_bytes(b"x" * 5000)
    (tmp / "upload.png").write_bytes(b"y" * 1000)
    assert clear_temp(tmp) == 6000
    assert tmp.is_dir() and list(tmp.iterdir()) == []
    assert clear_temp(tmp) == 0


@pytest.mark.slow
def test_prepare_holds_the_data_dir_and_starts_from_an_empty_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "tmp"))  # prepare sets it: put back afterwards
    (tmp_path / "tmp" / "gradio").mkdir(parents=True)
    (tmp_path / "tmp" / "gradio" / "frame.webp").write_bytes(b"z" * 100)
    page, app = prepare(ServeOptions(data_dir=tmp_path))
    try:
        assert not (tmp_path / "tmp" / "gradio" / "frame.webp").exists()
        with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
            SessionStore(tmp_path, exclusive=True)
    finally:
        app.sessions.store.close()
