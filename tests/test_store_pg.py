"""Several page processes on one PostgreSQL store: the same session served by two, every turn kept
and in order; turns of one session wait for each other across processes; a process killed
mid-turn leaves no half-applied turn and holds nothing up; pruning passes a session with a turn
running; a database of an older schema is migrated like a SQLite one.

Two stores in one test process are two processes to the database (each its own pool of
connections); the killed process is a real one. Skipped, saying why, where no PostgreSQL server
can be started (a failure with ``CI=true``): ``tests/postgres.py``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from postgres import postgres_url, require_driver  # noqa: F401  (postgres_url: a database of the test's own)

require_driver()  # before psycopg is imported: a skip saying why, or a failure in CI

import psycopg  # noqa: E402

from chatedit.agent import Agent  # noqa: E402
from chatedit.editor import Editor  # noqa: E402
from chatedit.rules_model import RulesChatModel  # noqa: E402
from chatedit.sessions import Notice, SessionService  # noqa: E402
from chatedit.store import SCHEMA_VERSION, SavedSession, SessionConflict, StoreError, open_store  # noqa: E402
from chatedit.store_pg import PostgresStore, postgres_schema  # noqa: E402

from test_sessions import PhotoWorld  # noqa: E402
from test_store import SID, a_memory, a_state, an_edit  # noqa: E402

ASKS = ["add thick glasses", "smile more", "make them older", "add bangs", "remove the glasses", "add a beard"]


def page(url: str, shared: Path) -> SessionService:
    """A page process's session service: its own agent and its own connections to the store."""
    return SessionService(Agent(Editor(PhotoWorld()), RulesChatModel()), open_store(url, shared), "open-world")


def user_lines(saved: SavedSession) -> list[str]:
    return [line["text"] for line in saved.chat if line["role"] == "user" and line["text"]]


def test_two_page_processes_keep_every_turn_of_one_session_in_order(postgres_url, tmp_path):  # noqa: F811
    a, b = page(postgres_url, tmp_path / "shared"), page(postgres_url, tmp_path / "shared")
    sid = a.ensure(None)
    assert b.ensure(sid) == sid  # the same session, opened in both
    for i, text in enumerate(ASKS):  # turns alternate between the processes, each from what the other saved
        events = list((a if i % 2 == 0 else b).chat(sid, text))
        assert not any(isinstance(e, Notice) for e in events), events
    stored = a.store.load(sid)
    assert user_lines(stored) == ASKS and [t.user for t in stored.state.turns] == ASKS
    assert stored.version == 1 + len(ASKS)  # created, then one save per turn
    for service in (a, b):  # each process shows the whole conversation on its next request
        service.ensure(sid)
        assert [line.text for line in service.chat_log(sid)] == [line["text"] for line in stored.chat]
        assert service.degrees(sid) == stored.state.current.degrees
        assert all(service.store.absolute(line["image"]).exists() for line in stored.chat if line["image"])


def test_turns_sent_to_both_processes_at_once_wait_for_each_other(postgres_url, tmp_path):  # noqa: F811
    a, b = page(postgres_url, tmp_path / "shared"), page(postgres_url, tmp_path / "shared")
    sid = a.ensure(None)
    b.ensure(sid)
    notices = []

    def send(service: SessionService, asks: list[str]) -> None:
        for text in asks:
            notices.extend(e for e in service.chat(sid, text) if isinstance(e, Notice))

    threads = [threading.Thread(target=send, args=(a, ASKS[:3])), threading.Thread(target=send, args=(b, ASKS[3:]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert notices == []  # no turn was refused or undone
    said = user_lines(a.store.load(sid))
    assert sorted(said) == sorted(ASKS)  # all six kept, each process's in its own order
    assert [s for s in said if s in ASKS[:3]] == ASKS[:3] and [s for s in said if s in ASKS[3:]] == ASKS[3:]
    assert a.store.version(sid) == 1 + len(ASKS)


def test_a_turn_lock_is_held_across_processes(postgres_url, tmp_path):  # noqa: F811
    first, second = open_store(postgres_url, tmp_path), open_store(postgres_url, tmp_path)
    order = []

    def wait_for_the_lock() -> None:
        with second.turn_lock(SID):
            order.append("second")

    with first.turn_lock(SID):
        waiter = threading.Thread(target=wait_for_the_lock)
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # the other process waits
        with second.turn_lock("f" * 32):  # another session does not
            pass
        order.append("first done")
    waiter.join(timeout=10)
    assert order == ["first done", "second"]
    first.close()
    second.close()


def test_a_stale_copy_is_refused_and_the_other_process_turn_kept(postgres_url, tmp_path):  # noqa: F811
    first, second = open_store(postgres_url, tmp_path), open_store(postgres_url, tmp_path)
    first.save(SavedSession(SID, "builtin", a_state(), a_memory()))
    mine, theirs = first.load(SID), second.load(SID)
    an_edit(second, theirs, 0)
    with pytest.raises(SessionConflict, match="saved by another process"):
        an_edit(first, mine, 1)
    assert user_lines(first.load(SID)) == user_lines(theirs)  # the other process's turn, whole
    first.close()
    second.close()


KILLED_MID_TURN = """
import sys, time
sys.path.insert(0, {tests!r})
import chatedit.store as store_module
from chatedit.store import open_store
from test_store import an_edit

store = open_store({url!r}, {shared!r})
saved = store.load({sid!r})
write_list = store_module._write_list

def stalled(run, session_id, spec, items, written):  # the turn's rows half written, then a kill -9
    fresh = write_list(run, session_id, spec, items, written)
    if spec.table == "turns":
        print("mid-turn", flush=True)
        time.sleep(120)
    return fresh

store_module._write_list = stalled
with store.turn_lock({sid!r}):
    an_edit(store, saved, 7)
"""


def test_a_process_killed_mid_turn_leaves_no_half_turn_and_holds_nothing_up(postgres_url, tmp_path):  # noqa: F811
    store = open_store(postgres_url, tmp_path)
    saved = SavedSession(SID, "builtin", a_state(), a_memory())
    an_edit(store, saved, 0)
    before = store.load(SID)
    script = KILLED_MID_TURN.format(tests=str(Path(__file__).parent), url=postgres_url, shared=str(tmp_path), sid=SID)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "mid-turn"
    finally:
        child.kill()  # SIGKILL
        child.wait(timeout=30)
    started = time.monotonic()
    with store.turn_lock(SID):  # the killed process's lock went with its connection
        assert time.monotonic() - started < 10
        after = store.load(SID)
        assert after.version == before.version and after.state.to_json() == before.state.to_json()
        assert after.chat == before.chat and len(after.memory) == len(before.memory)
        an_edit(store, after, 1)  # and the session goes on
    assert store.load(SID).version == before.version + 1
    store.close()


def test_pruning_passes_a_session_with_a_turn_running_in_another_process(postgres_url, tmp_path):  # noqa: F811
    busy, pruner = open_store(postgres_url, tmp_path), open_store(postgres_url, tmp_path, max_sessions=0)
    other = "f" * 32
    for sid in (SID, other):
        busy.save(SavedSession(sid, "builtin", a_state(), []))
    with busy.turn_lock(SID):
        assert pruner.prune() == [other]
    assert pruner.prune() == [SID] and pruner.ids() == []
    busy.close()
    pruner.close()


def test_a_database_of_schema_2_is_migrated(postgres_url, tmp_path):  # noqa: F811
    # 1. the schema as a version 2 store would have made it: no sessions.version
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in postgres_schema():
            conn.execute(statement)
        conn.execute("ALTER TABLE sessions DROP COLUMN version")
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (2)")
        assert "version" not in [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'sessions'")]
    # 2. opened: migrated once, sessions saved and versioned from then on
    store = PostgresStore(postgres_url, tmp_path)
    store.save(SavedSession(SID, "builtin", a_state(), a_memory()))
    assert store.load(SID).version == 1
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ValueError, match="newer ChatEdit"):  # a newer schema is refused by name, not misread
        PostgresStore(postgres_url, tmp_path)


def test_a_turn_waiting_too_long_for_another_process_is_refused_with_a_reason(postgres_url, tmp_path,  # noqa: F811
                                                                                monkeypatch):
    monkeypatch.setattr("chatedit.store_pg.TURN_LOCK_TIMEOUT_S", 0.3)
    first, second = open_store(postgres_url, tmp_path), open_store(postgres_url, tmp_path)
    with first.turn_lock(SID), pytest.raises(StoreError, match="busy in another process"), second.turn_lock(SID):
        pass
    with second.turn_lock(SID):  # free again once the other turn ended
        pass
    first.close()
    second.close()


@pytest.mark.slow
def test_two_page_processes_over_http_on_one_store_through_a_kill(postgres_url):  # noqa: F811
    from chatedit import bench_serve

    pytest.importorskip("gradio")
    # every user's turns alternate between the two pages; one page is killed mid-turn and restarted
    result = bench_serve.run(users=2, turns=4, faults=1, time_limit_s=600, store=postgres_url, pages=2)
    assert result["pages"] == 2 and result["store"] == "postgresql"
    assert result["errors"] == 0, result["error_examples"]  # every answer showed the user's turns, in order
    assert result["leaks"] == 0, result["leak_examples"]
    assert result["turns"] == 8 and result["kills"] == 1
    assert result["half_applied"] == 0 and result["lost_turns"] == 0, result["half_applied_examples"]
    assert result["conflicts"] == 0 and result["busy"] == 0
    assert result["integrity_ok"], result["integrity_problems"] + result["store_errors"]
