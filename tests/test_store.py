"""Sessions on disk: everything a session needs comes back, old ones go, bad ids never touch a path; old
databases are migrated, a save writes only what changed and a failed one nothing, an edit costs a few KB,
a save based on a stale copy is refused.

The tests that take ``stores`` run against both stores, SQLite and PostgreSQL (a throwaway
cluster, ``tests/postgres.py``; skipped, saying why, where none can be started)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, messages_to_dict
from PIL import Image

from chatedit.state import DialogState, Entry, Turn
from chatedit.store import CHAT_FACE_PX, RETIRED_FACE, SCHEMA_VERSION, SavedSession, SessionStore, StoreError, open_store

from postgres import drop_database, fresh_database

SID = "0123456789abcdef0123456789abcdef"


class Stores:
    """Stores of one kind over one database and one folder, as processes would open them: SQLite
    in ``folder``, or the PostgreSQL database at ``url`` with its images in ``folder``."""

    def __init__(self, folder: Path, url: str | None = None):
        self.folder, self.url = folder, url
        self.kind = "postgresql" if url else "sqlite"
        self._opened: list[SessionStore] = []

    def open(self, **limits) -> SessionStore:
        store = open_store(self.url, self.folder, **limits)
        self._opened.append(store)
        return store

    def sql(self, statement: str) -> list[tuple]:
        """Runs ``statement`` on the database directly (committed at once); returns its rows."""
        if self.url is None:
            db = sqlite3.connect(self.folder / "sessions.sqlite3", isolation_level=None)
            try:
                return db.execute(statement).fetchall()
            finally:
                db.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request, tmp_path):
    url = fresh_database() if request.param == "postgresql" else None
    opened = Stores(tmp_path, url)
    yield opened
    opened.close()
    if url:
        drop_database(url)


def a_state() -> DialogState:
    state = DialogState(seed=5)
    degrees = {"bangs": 0, "eyeglasses": 0, "beard": 0, "smiling": 1, "age": 2}
    state.push(Entry(torch.randn(1, 64), degrees, "start", 0))
    state.push(Entry(torch.randn(1, 64), {**degrees, "smiling": 3}, "smiling 1→3", 0))
    state.move(-1)
    state.focus, state.last_change = "smiling", 2
    state.turns.append(Turn("smile more", [{"name": "edit_attribute", "args": {"attribute": "smiling"}, "ok": True}],
                            "They now have a broad smile.", {**degrees, "smiling": 3}))
    return state


def test_a_saved_session_comes_back_whole(stores):
    store = stores.open()
    state = a_state()
    memory = [HumanMessage("smile more"),
              AIMessage("", tool_calls=[{"name": "edit_attribute", "args": {"attribute": "smiling", "change": 1},
                                         "id": "c1"}]),
              ToolMessage("They now smile.", tool_call_id="c1", name="edit_attribute"), AIMessage("Done.")]
    image = store.save_image(SID, torch.rand(3, 16, 16), "chat-0001")
    chat = [{"role": "user", "text": "smile more", "image": None},
            {"role": "assistant", "text": None, "image": store.relative(image)}]
    store.save(SavedSession(SID, "builtin", state, memory, chat))
    store.close()

    again = stores.open().load(SID)  # a new process would open the same database
    assert again.state.to_json() == state.to_json()
    assert again.state.index == 0 and again.state.can_redo() == 1
    assert [type(m) for m in again.memory] == [type(m) for m in memory]
    assert again.memory[1].tool_calls[0]["args"] == {"attribute": "smiling", "change": 1}
    assert again.chat == chat and again.backend == "builtin"
    assert stores.open().absolute(chat[1]["image"]) == image.resolve()


def test_saving_again_updates_the_row_and_keeps_its_creation_time(stores):
    store = stores.open()
    saved = SavedSession(SID, "builtin", a_state(), [])
    store.save(saved)
    created = saved.created
    saved.chat.append({"role": "user", "text": "hi", "image": None})
    store.save(saved)
    again = store.load(SID)
    assert again.created == created and again.chat[-1]["text"] == "hi" and store.ids() == [SID]


def test_prune_removes_old_sessions_and_keeps_the_most_recent(stores):
    store = stores.open(max_age_days=1, max_sessions=2)
    ids = [f"{i:032x}" for i in range(4)]
    for sid in ids:
        store.save(SavedSession(sid, "builtin", a_state(), []))
        store.save_image(sid, torch.rand(3, 8, 8), "current")
        time.sleep(0.01)
    removed = store.prune()
    assert sorted(removed) == ids[:2] and store.ids() == ids[:1:-1]
    assert not (store.images_dir / ids[0]).exists() and (store.images_dir / ids[3]).exists()
    assert set(store.prune(now=time.time() + 2 * 86400)) == set(ids[2:])
    assert store.ids() == []


@pytest.mark.parametrize("bad", ["../../etc", "ABC", "", "0123456789abcdef0123456789abcde/", None])
def test_bad_session_ids_never_reach_the_disk(stores, bad):
    store = stores.open()
    assert store.load(bad) is None
    with pytest.raises(ValueError):
        store.save_image(bad, torch.rand(3, 8, 8), "x")
    with pytest.raises(ValueError):
        store.save(SavedSession(bad, "builtin", a_state(), []))


def test_paths_outside_the_data_dir_are_refused(stores):
    store = stores.open()
    with pytest.raises(ValueError):
        store.absolute("../outside.png")
    with pytest.raises(ValueError):
        store.save_image(SID, torch.rand(3, 8, 8), "../../x")


# --------------------------------------------------------------------------- schema, growth, incremental saves


OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, backend TEXT NOT NULL,
    state TEXT NOT NULL, memory TEXT NOT NULL, chat TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated);
"""


def a_memory() -> list:
    return [HumanMessage("smile more"),
            AIMessage("", tool_calls=[{"name": "edit_attribute", "args": {"attribute": "smiling", "change": 1},
                                       "id": "c1"}]),
            ToolMessage("They now smile.", tool_call_id="c1", name="edit_attribute"), AIMessage("Done.")]


def test_a_database_of_the_first_schema_is_migrated_and_its_sessions_load_unchanged(tmp_path):
    # 1. a database as the store wrote it before schema versions: one row per session, all JSON
    state, memory = a_state(), a_memory()
    chat = [{"role": "user", "text": "smile more", "image": None},
            {"role": "assistant", "text": None, "image": f"images/{SID}/chat-0001.png"}]
    old_json = state.to_json()
    db = sqlite3.connect(tmp_path / "sessions.sqlite3")
    db.executescript(OLD_SCHEMA)
    others = [f"{i:032x}" for i in range(3)]
    for sid in [SID, *others]:
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (sid, 100.0, 200.0, "builtin", old_json, json.dumps(messages_to_dict(memory)), json.dumps(chat)))
    db.commit()
    db.close()

    # 2. the new store opens it: same session, latents to the bit, now in the new tables
    store = SessionStore(tmp_path)
    again = store.load(SID)
    assert again.state.to_json() == old_json and again.chat == chat and again.owner is None
    assert messages_to_dict(again.memory) == messages_to_dict(memory)
    assert (again.created, again.updated, again.backend) == (100.0, 200.0, "builtin")
    assert all(torch.equal(a.latent, b.latent) for a, b in zip(again.state.entries, state.entries, strict=True))
    assert all(store.load(sid).state.to_json() == old_json for sid in others)
    store.close()
    db = sqlite3.connect(tmp_path / "sessions.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT typeof(latent), length(latent) FROM entries").fetchall() == [("blob", 64 * 4)] * 2 * 4
    assert "state" not in [c[1] for c in db.execute("PRAGMA table_info(sessions)")]

    # 3. and a schema newer than this code is refused by name, not misread
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ValueError, match="newer ChatEdit"):
        SessionStore(tmp_path)


def test_a_database_of_schema_1_gains_the_words_that_asked_for_each_face(tmp_path):
    # a schema 1 database (entries without ``asked``), written by today's store and then taken back
    store = SessionStore(tmp_path)
    store.save(SavedSession(SID, "builtin", a_state(), a_memory()))
    store.close()
    db = sqlite3.connect(tmp_path / "sessions.sqlite3")
    db.execute("ALTER TABLE entries DROP COLUMN asked")
    db.execute("ALTER TABLE sessions DROP COLUMN version")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SessionStore(tmp_path)
    again = store.load(SID)
    assert [e.asked for e in again.state.entries] == ["", ""]
    assert [e.action for e in again.state.entries] == [e.action for e in a_state().entries]
    # and new faces keep their words from now on
    again.state.push(dataclasses.replace(again.state.entries[-1], asked="make her smile a little"))
    store.save(again)
    assert store.load(SID).state.entries[-1].asked == "make her smile a little"
    store.close()


def a_face(seed: int) -> torch.Tensor:
    """A smooth 128-px picture, as compressible as a generated face."""
    low = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(low[None], size=(128, 128), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def an_edit(store: SessionStore, saved: SavedSession, n: int) -> None:
    """One edit as a turn leaves it: a face in the history, a turn, four messages, three chat lines."""
    state = saved.state
    degrees = {"bangs": 0, "eyeglasses": n % 6, "beard": 0, "smiling": 1, "age": 2}
    state.push(Entry(torch.randn(1, 64), degrees, f"eyeglasses {n % 6}→{(n + 1) % 6}", 0))
    state.edits += 1
    state.turns.append(Turn("add glasses", [{"name": "edit_attribute", "args": {"attribute": "eyeglasses", "change": 1},
                                             "ok": True}], "They now wear glasses with a thin frame.", degrees))
    saved.memory += [HumanMessage("add glasses"),
                     AIMessage("", tool_calls=[{"name": "edit_attribute", "id": f"c{n}",
                                                "args": {"attribute": "eyeglasses", "change": 1}}]),
                     ToolMessage("They now wear glasses with a thin frame.", tool_call_id=f"c{n}",
                                 name="edit_attribute"),
                     AIMessage("They now wear glasses with a thin frame. Thicker?")]
    image = store.save_chat_image(saved.id, a_face(n))
    saved.chat += [{"role": "user", "text": "add glasses", "image": None},
                   {"role": "assistant", "text": None, "image": store.relative(image)},
                   {"role": "assistant", "text": "They now wear glasses with a thin frame. Thicker?", "image": None}]
    store.save(saved)


def db_bytes(data_dir) -> int:
    """The database's size once its write-ahead log is folded in."""
    db = sqlite3.connect(data_dir / "sessions.sqlite3")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    size = pages * db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    return size


def test_an_edit_costs_a_few_kilobytes_on_disk(tmp_path):
    store = SessionStore(tmp_path)
    saved = SavedSession(SID, "builtin", a_state(), a_memory())
    for n in range(5):
        an_edit(store, saved, n)
    db_before, images_before = db_bytes(tmp_path), sum(f.stat().st_size for f in store.images_dir.rglob("*"))
    for n in range(5, 25):
        an_edit(store, saved, n)
    db_per_edit = (db_bytes(tmp_path) - db_before) / 20
    images_per_edit = (sum(f.stat().st_size for f in store.images_dir.rglob("*")) - images_before) / 20
    # measured: 3.3 KB of database and 5.1 KB of WebP per edit (faces drawn at 256 px for the chat)
    assert db_per_edit < 6_000 and images_per_edit < 8_000, (db_per_edit, images_per_edit)
    assert store.load(SID).chat == saved.chat and len(store.load(SID).state.entries) == 1 + 25  # a_state's redo entry dropped


class Writes:
    """Counts the rows a save inserts, updates or deletes, by table (triggers in the database)."""

    TABLES = ("sessions", "entries", "turns", "memory", "chat")

    def __init__(self, stores: Stores):
        self.stores = stores
        stores.sql("CREATE TABLE IF NOT EXISTS written (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        if stores.kind == "postgresql":
            stores.sql("CREATE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "INSERT INTO written VALUES (TG_TABLE_NAME, 1) ON CONFLICT (tbl) DO UPDATE SET n = written.n + 1; "
                       "RETURN NULL; END $$")
        for table in self.TABLES:
            if stores.kind == "postgresql":
                stores.sql(f"CREATE TRIGGER count_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
                           "FOR EACH ROW EXECUTE FUNCTION count_write()")
                continue
            for op in ("INSERT", "UPDATE", "DELETE"):
                stores.sql(f"CREATE TRIGGER IF NOT EXISTS count_{table}_{op} AFTER {op} ON {table} BEGIN "
                           f"INSERT INTO written VALUES ('{table}', 1) ON CONFLICT(tbl) DO UPDATE SET n = n + 1; END")

    def take(self) -> dict[str, int]:
        counts = dict(self.stores.sql("SELECT tbl, n FROM written"))
        self.stores.sql("DELETE FROM written")
        return counts


def test_a_save_writes_only_what_changed(stores):
    store = stores.open()
    saved = SavedSession(SID, "builtin", a_state(), a_memory())
    for n in range(30):
        an_edit(store, saved, n)
    writes = Writes(stores)

    an_edit(store, saved, 30)  # one more edit: its own rows, whatever came before
    assert writes.take() == {"sessions": 1, "entries": 1, "turns": 1, "memory": 4, "chat": 3}
    store.save(saved)  # nothing new: the session's row (its time) only
    assert writes.take() == {"sessions": 1}

    saved.state.move(-2)  # undo twice, then a new edit drops the redo branch: one entry rewritten, one deleted
    an_edit(store, saved, 31)
    assert writes.take() == {"sessions": 1, "entries": 2, "turns": 1, "memory": 4, "chat": 3}

    again = stores.open()  # another store (a restarted process): loaded, then saved, writes the same
    reloaded = again.load(SID)
    an_edit(again, reloaded, 32)
    assert writes.take() == {"sessions": 1, "entries": 1, "turns": 1, "memory": 4, "chat": 3}
    fresh = stores.open()  # saved without being loaded first: the rows on disk are read back
    reloaded.chat.append({"role": "user", "text": "hello", "image": None})
    fresh.save(reloaded)
    assert writes.take() == {"sessions": 1, "chat": 1}
    assert fresh.load(SID).state.to_json() == reloaded.state.to_json() and fresh.load(SID).chat == reloaded.chat


def test_a_failed_write_leaves_the_session_as_saved_before(stores):
    store = stores.open()
    saved = SavedSession(SID, "builtin", a_state(), a_memory())
    an_edit(store, saved, 0)
    before = store.load(SID)
    if stores.kind == "postgresql":  # the disk fills up at the chat
        stores.sql("CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'database or disk is full'; END $$")
        stores.sql("CREATE TRIGGER disk_full BEFORE INSERT ON chat FOR EACH ROW EXECUTE FUNCTION full_disk()")
    else:
        stores.sql("CREATE TRIGGER full BEFORE INSERT ON chat BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")

    with pytest.raises(StoreError, match="disk is full"):
        an_edit(store, saved, 1)  # history, turn and memory were written before the chat failed: all undone
    after = store.load(SID)
    assert after.state.to_json() == before.state.to_json() and after.chat == before.chat
    assert len(after.memory) == len(before.memory) and after.updated == before.updated

    stores.sql("DROP TRIGGER disk_full ON chat" if stores.kind == "postgresql" else "DROP TRIGGER full")  # room again
    store.save(saved)
    assert store.load(SID).state.to_json() == saved.state.to_json() and store.load(SID).chat == saved.chat
    assert len(store.load(SID).memory) == len(saved.memory)


def test_the_owner_is_kept_from_the_first_save(stores):
    store = stores.open()
    saved = SavedSession(SID, "builtin", a_state(), [], owner="ada")
    store.save(saved)
    store.save(SavedSession(SID, "builtin", a_state(), [], owner="bob"))
    assert store.load(SID).owner == "ada"


def test_a_session_keeps_its_last_chat_faces_and_retires_the_others(stores):
    store = stores.open(max_chat_images=3)
    saved = SavedSession(SID, "builtin", a_state(), [])
    for n in range(5):
        an_edit(store, saved, n)
    folder = store.images_dir / SID
    assert sorted(p.name for p in folder.iterdir()) == ["chat-0003.webp", "chat-0004.webp", "chat-0005.webp"]
    faces = [line for line in saved.chat if line["image"]]
    assert [Path(line["image"]).name for line in faces] == ["chat-0003.webp", "chat-0004.webp", "chat-0005.webp"]
    assert [line["text"] for line in saved.chat[1:6:3]] == [RETIRED_FACE] * 2  # the lines of faces 1 and 2
    assert store.load(SID).chat == saved.chat
    assert store.save_chat_image(SID, a_face(9)).name == "chat-0006.webp"  # numbers are never reused
    assert Image.open(folder / "chat-0006.webp").size == (CHAT_FACE_PX, CHAT_FACE_PX)  # a 128-px face drawn at the chat's size


def test_a_face_written_for_a_turn_that_never_saved_is_removed_later(stores):
    store = stores.open()
    saved = SavedSession(SID, "builtin", a_state(), [])
    an_edit(store, saved, 0)
    orphan = store.save_chat_image(SID, a_face(1))  # its turn was rolled back: no chat line shows it
    an_edit(store, saved, 2)
    assert not orphan.exists() and len(list((store.images_dir / SID).iterdir())) == 2
