"""Sessions on disk: a database for the conversation and the dialog state, image files beside it.

A session is a small row in ``sessions`` (its backend, its owner, the dialog's few small fields)
and one row per item of each of its lists: ``entries`` (every face of the history: the latent as
float32 bytes, its degrees, what made it), ``turns`` (the turn log), ``memory`` (the language
model's messages) and ``chat`` (the chat as the page shows it). A save writes only the rows that
changed, all in one transaction: a turn appends a few rows and updates the session's row; a crash
or a failed write (a full disk) leaves the session as it was saved before. The schema's version
is SQLite's ``user_version``; a database of an older version is migrated when it is opened.

Every save moves the session's ``version`` on by one. A copy of a session knows the version it
was loaded or saved at (``SavedSession.version``), and a save based on an older version than the
stored one is refused (``SessionConflict``): a turn written by another process is never silently
overwritten. ``turn_lock`` orders the turns of one session across processes; here, with one
process per data directory, the session service's queue already does, so it holds nothing.

The images the chat shows are files under ``images/<session id>/`` beside the database; a
session keeps the last ``max_chat_images`` of them, and earlier faces of its chat become a line of
text. Old sessions are pruned by age and by count, files included.

One process writes a data directory at a time: ``DataDirLock`` (an OS lock on ``<data dir>/lock``,
taken with ``SessionStore(..., exclusive=True)``) refuses a second one and names the first.

Only the standard library's ``sqlite3``: the store is embedded, nothing to run beside the app.
Several page processes share a PostgreSQL store instead (``chatedit.store_pg``, through
``open_store``), with the same schema, the same migrations and the same behaviour.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
from PIL import Image

from chatedit.images import display_size, to_pil
from chatedit.state import DialogState, Entry, Turn

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
KEPT_VERSIONS = 3  # versions of a download kept: the newest, and those an open tab may still link to
WAL_PAGES = 128  # pages (4 KiB each) the write-ahead log holds before they are folded into the database
WAL_BYTES = 512 * 1024  # the log's size left after folding
CHAT_IMAGE = re.compile(r"^chat-(\d+)\.(?:png|webp)$")
SCHEMA_VERSION = 3  # 0: one row per session, the state as JSON (latents as lists of numbers); 1: no entries.asked;
# 2: no sessions.version
CHAT_PHOTO_PX = 384  # a photo shown in the chat is kept at most this large a side
CHAT_FACE_PX = 256  # a smaller face is drawn this large (Lanczos): the chat shows faces at 192 px, crisp
CHAT_IMAGE_QUALITY = 90  # WebP: ~6 KB for a face at 256 px (a PNG is ~60 KB); the downloads stay PNG
MAX_CHAT_IMAGES = 200  # faces kept in a session's chat; earlier ones become RETIRED_FACE
RETIRED_FACE = "(an earlier face, no longer kept)"
CACHED_SESSIONS = 512  # sessions whose written rows the store remembers (to write only what changed)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    backend TEXT NOT NULL,
    owner TEXT,               -- the login that created the session (NULL without --auth)
    dialog TEXT NOT NULL,     -- DialogState.header() as JSON: the face shown and the dialog's small fields
    -- one more on every save: a save based on an older one is refused
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated);
CREATE TABLE IF NOT EXISTS entries (
    session TEXT NOT NULL, idx INTEGER NOT NULL,
    latent BLOB NOT NULL,     -- float32, little-endian, C order
    shape TEXT NOT NULL,      -- the latent's shape as JSON, e.g. [1, 64]
    degrees TEXT NOT NULL, action TEXT NOT NULL, face INTEGER NOT NULL,
    asked TEXT NOT NULL DEFAULT '',  -- the person's words for the turn that made the face
    PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS turns (
    session TEXT NOT NULL, idx INTEGER NOT NULL, turn TEXT NOT NULL, PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS memory (
    session TEXT NOT NULL, idx INTEGER NOT NULL, message TEXT NOT NULL, PRIMARY KEY (session, idx)
);
CREATE TABLE IF NOT EXISTS chat (
    session TEXT NOT NULL, idx INTEGER NOT NULL,
    line TEXT NOT NULL,       -- {"role", "text", "image"[, "words"]} as JSON, image relative to the data dir
    PRIMARY KEY (session, idx)
)
"""
# what takes a database of each schema version from the one before, the same in every store (the
# SQLite store's version 0 had another layout altogether: ``_migrate`` copies it over)
MIGRATIONS = {
    2: ("ALTER TABLE entries ADD COLUMN asked TEXT NOT NULL DEFAULT ''",),
    3: ("ALTER TABLE sessions ADD COLUMN version INTEGER NOT NULL DEFAULT 0",),
}


def valid_session_id(session_id: object) -> bool:
    """Session ids are 32 lowercase hex digits; anything else (a path, a quote) is refused."""
    return isinstance(session_id, str) and bool(SESSION_ID.match(session_id))


class StoreError(RuntimeError):
    """A session could not be written; the stored copy is the one saved before."""


class SessionConflict(StoreError):
    """The session was saved by another process since this copy of it was loaded; nothing was written."""


class DataDirInUse(ValueError):
    """Another process holds the data directory's lock."""


@dataclass
class SavedSession:
    id: str
    backend: str
    state: DialogState
    memory: list[BaseMessage]
    chat: list[dict] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0
    owner: str | None = None  # the login that created the session; set by its first save, never changed after
    # the stored version this copy is based on, set by ``load`` and ``save``; a save is refused when the
    # stored session has moved on since (None: written whatever is stored, as by a single process)
    version: int | None = None


# --------------------------------------------------------------------------- rows of the lists


def _entry_row(entry: Entry) -> tuple:
    latent = entry.latent.detach().to("cpu", torch.float32).contiguous()
    return (latent.numpy().astype("<f4").tobytes(), json.dumps(list(latent.shape)), json.dumps(entry.degrees),
            entry.action, entry.face, entry.asked)


def _entry(row: tuple) -> Entry:
    blob, shape, degrees, action, face, asked = row
    latent = torch.from_numpy(np.frombuffer(blob, dtype="<f4").astype(np.float32)).view(json.loads(shape))
    return Entry(latent, {k: int(v) for k, v in json.loads(degrees).items()}, action, int(face), asked)


@dataclass(frozen=True)
class _List:
    """One of a session's lists, a row per item: how an item becomes a row and back."""

    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Any], tuple]
    from_row: Callable[[tuple], Any]
    immutable: bool = False  # items never change once in the list: an item already written is a row unchanged


LISTS = (
    _List("entries", ("latent", "shape", "degrees", "action", "face", "asked"), _entry_row, _entry, immutable=True),
    _List("turns", ("turn",), lambda t: (json.dumps(asdict(t)),), lambda r: Turn(**json.loads(r[0]))),
    _List("memory", ("message",), lambda m: (json.dumps(message_to_dict(m)),),
          lambda r: messages_from_dict([json.loads(r[0])])[0], immutable=True),
    _List("chat", ("line",), lambda line: (json.dumps(line),), lambda r: json.loads(r[0])),
)


def _items(saved: SavedSession, chat: list[dict]) -> dict[str, list]:
    return {"entries": saved.state.entries, "turns": saved.state.turns, "memory": saved.memory, "chat": chat}


def _fingerprint(spec: _List, item: Any, row: tuple) -> tuple:
    """What the store remembers of a written row: the item (weakly, when immutable) and the row's hash."""
    return (weakref.ref(item) if spec.immutable and item is not None else None), hash(row)


def _write_list(run: Callable[..., Any], session_id: str, spec: _List, items: list, written: list | None) -> list:
    """Writes the rows of ``items`` that differ from ``written`` (the fingerprints of the stored
    rows, ``None`` when unknown: every row is written) and drops rows past the end."""
    columns = ", ".join(spec.columns)
    upsert = (f"INSERT INTO {spec.table} (session, idx, {columns}) VALUES (?, ?, {', '.join('?' * len(spec.columns))}) "
              f"ON CONFLICT (session, idx) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in spec.columns)}")
    fresh = []
    for i, item in enumerate(items):
        before = written[i] if written is not None and i < len(written) else None
        if before is not None and before[0] is not None and before[0]() is item:
            fresh.append(before)  # the very item written before
            continue
        row = spec.to_row(item)
        if before is None or before[1] != hash(row):
            run(upsert, (session_id, i, *row))
        fresh.append(_fingerprint(spec, item, row))
    if written is None or len(written) > len(items):
        run(f"DELETE FROM {spec.table} WHERE session = ? AND idx >= ?", (session_id, len(items)))
    return fresh


def _delete_lists(run: Callable[..., Any], session_id: str) -> None:
    for spec in LISTS:
        run(f"DELETE FROM {spec.table} WHERE session = ?", (session_id,))


# --------------------------------------------------------------------------- the store


class SessionStore:
    """Sessions in ``data_dir/sessions.sqlite3`` and ``data_dir/images/``; safe to share between threads.

    ``exclusive=True`` first takes the data directory's lock (``DataDirLock``): a server does, so
    that a second one on the same directory refuses to start. A write that fails raises
    ``StoreError`` and leaves the stored session as it was; a save based on a version older than
    the stored one raises ``SessionConflict``.

    The database is reached through ``_transaction`` alone (and the migration when it is opened):
    ``chatedit.store_pg.PostgresStore`` is this store over another connection."""

    _errors: tuple[type[BaseException], ...] = (sqlite3.Error,)  # the driver's errors, raised as StoreError
    _for_update = ""  # what a SELECT adds to lock the session's row until the commit (SQLite locks the database)

    def __init__(self, data_dir: str | Path, max_age_days: float = 30.0, max_sessions: int = 1000,
                 max_chat_images: int = MAX_CHAT_IMAGES, exclusive: bool = False):
        self._setup(data_dir, max_age_days, max_sessions, max_chat_images, lock_dir=data_dir if exclusive else None)
        path = self.data_dir / "sessions.sqlite3"
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # the write-ahead log folded back every WAL_PAGES pages and cut back to WAL_BYTES after: a
            # bounded file, where SQLite's default leaves it at its largest size (about 4 MB) for good
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
            _migrate(self._db, path)
        except BaseException:
            self.close()
            raise

    def _setup(self, data_dir: str | Path, max_age_days: float, max_sessions: int, max_chat_images: int,
               lock_dir: str | Path | None) -> None:
        """What every store has: its limits, its images folder, the lock on ``lock_dir`` (taken
        before the database is opened) and what it remembers of the rows it wrote."""
        if max_chat_images < 1:
            raise ValueError(f"max_chat_images must be at least 1, got {max_chat_images}")
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock = None
        if lock_dir is not None:
            Path(lock_dir).mkdir(parents=True, exist_ok=True)
            self.lock = DataDirLock(lock_dir)
        self.images_dir = self.data_dir / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_days = max_age_days
        self.max_sessions = max_sessions
        self.max_chat_images = max_chat_images
        self._lock = threading.Lock()  # the SQLite connection
        self._memo = threading.Lock()  # ``_written``
        # session -> (the version written, list -> fingerprints of its rows)
        self._written: OrderedDict[str, tuple[int, dict[str, list]]] = OrderedDict()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self.lock is not None:
            self.lock.release()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Callable[..., Any]]:
        """One transaction (a write takes the database's write lock first), handing out
        ``run(sql, params)``; committed at the end, rolled back on any error or interrupt."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db.execute
                self._db.execute("COMMIT")
            except BaseException:  # an interrupt too: no transaction is left open
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def turn_lock(self, session_id: str) -> AbstractContextManager[None]:
        """Held while a turn of the session runs, so that turns of one session in several processes
        run one after another. One process owns a SQLite store: nothing to hold."""
        self._check(session_id)
        return nullcontext()

    def _turn_running(self, run: Callable[..., Any], session_id: str) -> bool:
        """Whether a process holds the session's ``turn_lock`` (pruning passes it by); never, here."""
        return False

    # ----------------------------------------------------------------- sessions

    def save(self, saved: SavedSession) -> None:
        """Writes what changed since the session was last saved or loaded, in one transaction, and
        moves its version on (``saved.version`` too).

        Faces of the chat beyond the last ``max_chat_images`` are retired: their lines in
        ``saved.chat`` become ``RETIRED_FACE`` and their files are removed once the save is written.
        Raises ``SessionConflict`` when the stored session is newer than ``saved.version`` and
        ``StoreError`` when the database refuses the write; nothing of it is kept then."""
        self._check(saved.id)
        now = time.time()
        created = saved.created or now
        chat, retired = self._retire_faces(saved.chat)
        try:
            with self._transaction(write=True) as run:
                # 1. the stored version, the session's row locked until the commit
                row = run(f"SELECT version FROM sessions WHERE id = ?{self._for_update}", (saved.id,)).fetchone()
                stored = None if row is None else row[0]
                if stored is not None and saved.version is not None and saved.version != stored:
                    raise SessionConflict(f"session {saved.id} was saved by another process (version {stored}, "
                                          f"this copy is of version {saved.version}); nothing was written")
                # 2. the session's row, one version on (a session pruned meanwhile comes back whole)
                version, dialog = (stored or 0) + 1, json.dumps(saved.state.header())
                if stored is None:
                    inserted = run("INSERT INTO sessions (id, created, updated, backend, owner, dialog, version) "
                                   "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                                   (saved.id, created, now, saved.backend, saved.owner, dialog, version)).rowcount
                    if not inserted:
                        raise SessionConflict(f"session {saved.id} was created by another process meanwhile")
                else:
                    run("UPDATE sessions SET updated = ?, backend = ?, owner = COALESCE(owner, ?), dialog = ?, "
                        "version = ? WHERE id = ?", (now, saved.backend, saved.owner, dialog, version, saved.id))
                # 3. the rows that changed
                written = self._fingerprints(run, saved.id, stored)
                items = _items(saved, chat)
                fresh = {spec.table: _write_list(run, saved.id, spec, items[spec.table], written.get(spec.table))
                         for spec in LISTS}
        except BaseException as error:
            self._forget(saved.id)
            if isinstance(error, self._errors):
                raise StoreError(f"session {saved.id} could not be written ({error}); "
                                 "the stored copy is the one saved before") from error
            raise
        self._remember(saved.id, version, fresh)
        for i in retired:
            saved.chat[i] = chat[i]
        saved.created, saved.updated, saved.version = created, now, version
        self._remove_unused_images(saved.id, chat)

    def load(self, session_id: str) -> SavedSession | None:
        if not valid_session_id(session_id):
            return None
        with self._transaction(write=False) as run:  # one snapshot of the session, whoever writes meanwhile
            row = run("SELECT backend, owner, dialog, created, updated, version FROM sessions WHERE id = ?",
                      (session_id,)).fetchone()
            if row is None:
                return None
            lists, fresh = {}, {}
            for spec in LISTS:
                rows = run(f"SELECT {', '.join(spec.columns)} FROM {spec.table} WHERE session = ? ORDER BY idx",
                           (session_id,)).fetchall()
                lists[spec.table] = [spec.from_row(tuple(r)) for r in rows]
                fresh[spec.table] = [_fingerprint(spec, item, tuple(r))
                                     for item, r in zip(lists[spec.table], rows, strict=True)]
        backend, owner, dialog, created, updated, version = row
        self._remember(session_id, version, fresh)
        state = DialogState.from_parts(json.loads(dialog), lists["entries"], lists["turns"])
        return SavedSession(session_id, backend, state, lists["memory"], lists["chat"], created, updated, owner,
                            version)

    @property
    def shared(self) -> bool:
        """Whether another process may write these sessions: not for a SQLite store this process holds
        the data directory's lock of (a server's), so its pages need not ask for newer copies."""
        return self.lock is None

    def version(self, session_id: str) -> int | None:
        """The stored session's version; None when there is none."""
        self._check(session_id)
        with self._transaction(write=False) as run:
            row = run("SELECT version FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else row[0]

    def ids(self) -> list[str]:
        """Session ids, most recently used first."""
        with self._transaction(write=False) as run:
            return [r[0] for r in run("SELECT id FROM sessions ORDER BY updated DESC").fetchall()]

    def delete(self, session_id: str) -> None:
        self._check(session_id)
        try:
            with self._transaction(write=True) as run:
                run("DELETE FROM sessions WHERE id = ?", (session_id,))
                _delete_lists(run, session_id)
        finally:
            self._forget(session_id)
        shutil.rmtree(self.images_dir / session_id, ignore_errors=True)

    def prune(self, now: float | None = None) -> list[str]:
        """Deletes sessions unused for ``max_age_days`` and all but the ``max_sessions`` most recent.

        Safe while other processes use the store: a session saved since it was picked, or with a
        turn running, is passed by."""
        now = time.time() if now is None else now
        cutoff = now - self.max_age_days * 86400
        with self._transaction(write=False) as run:
            rows = run("SELECT id, updated, version FROM sessions ORDER BY updated DESC").fetchall()
        doomed = [(sid, version) for i, (sid, updated, version) in enumerate(rows)
                  if updated < cutoff or i >= self.max_sessions]
        removed = []
        for sid, version in doomed:
            with self._transaction(write=True) as run:
                gone = not self._turn_running(run, sid) and run(
                    "DELETE FROM sessions WHERE id = ? AND version = ?", (sid, version)).rowcount > 0
                if gone:
                    _delete_lists(run, sid)
            if gone:
                self._forget(sid)
                shutil.rmtree(self.images_dir / sid, ignore_errors=True)
                removed.append(sid)
        return removed

    def _fingerprints(self, run: Callable[..., Any], session_id: str, stored: int | None) -> dict[str, list]:
        """What is stored for the session at version ``stored``: remembered, or read back (the
        hashes of its rows) when this store last wrote or read another version of it."""
        with self._memo:
            remembered = self._written.get(session_id)
            if remembered is not None and remembered[0] == stored:
                self._written.move_to_end(session_id)
                return remembered[1]
        known = {}
        for spec in LISTS:
            rows = run(f"SELECT {', '.join(spec.columns)} FROM {spec.table} WHERE session = ? ORDER BY idx",
                       (session_id,)).fetchall()
            known[spec.table] = [_fingerprint(spec, None, tuple(r)) for r in rows]
        return known

    def _remember(self, session_id: str, version: int, fingerprints: dict[str, list]) -> None:
        with self._memo:
            self._written[session_id] = (version, fingerprints)
            self._written.move_to_end(session_id)
            while len(self._written) > CACHED_SESSIONS:
                self._written.popitem(last=False)

    def _forget(self, session_id: str) -> None:
        with self._memo:
            self._written.pop(session_id, None)

    # ----------------------------------------------------------------- images

    def save_image(self, session_id: str, image: torch.Tensor | Image.Image, name: str, version: str | None = None,
                   keep: int = KEPT_VERSIONS) -> Path:
        """Writes ``image`` ((3, H, W), or a picture) as ``images/<session>/<name>.png``, or, given a ``version`` (what
        the picture shows, e.g. a digest of its latent), as ``<name>-<version>.png``: a new name for
        new content, so a page never shows a cached older picture under the same address. Of a
        name's versions the ``keep`` newest stay. Returns the absolute path."""
        self._check(session_id)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) or (version and not re.fullmatch(r"[A-Za-z0-9]{1,64}", version)):
            raise ValueError(f"bad image name {name!r} (version {version!r})")
        folder = self.images_dir / session_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"{name}-{version}.png" if version else f"{name}.png")
        if not path.exists() or not version:  # a version's content never changes
            (image if isinstance(image, Image.Image) else to_pil(image)).save(path)
        os.utime(path)  # the newest version, for the pruning below
        if version:
            self.prune_versions(session_id, name, ".png", keep)
        return path

    def prune_versions(self, session_id: str, name: str, suffix: str, keep: int = KEPT_VERSIONS) -> None:
        """Removes all but the ``keep`` newest ``<name>-<version><suffix>`` files of the session."""
        folder = self.images_dir / session_id
        pattern = re.compile(rf"^{re.escape(name)}-[A-Za-z0-9]+{re.escape(suffix)}$")
        try:
            versions = sorted((p for p in folder.iterdir() if pattern.match(p.name)),
                              key=lambda p: p.stat().st_mtime_ns, reverse=True)
        except OSError:
            return
        for old in versions[keep:]:
            old.unlink(missing_ok=True)

    def save_chat_image(self, session_id: str, image: torch.Tensor | Image.Image) -> Path:
        """Writes a face ``image`` (3, H, W) the chat shows as ``images/<session>/chat-NNNN.webp``,
        numbered after the session's last one (so a retired face's number is never reused);
        returns the absolute path."""
        self._check(session_id)
        folder = self.images_dir / session_id
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for m in map(CHAT_IMAGE.match, os.listdir(folder)) if m]
        path = folder / f"chat-{max(numbers, default=0) + 1:04d}.webp"
        picture = image if isinstance(image, Image.Image) else to_pil(image)
        if max(picture.size) > CHAT_PHOTO_PX:  # a photo as sent, at the size the chat shows it
            picture = display_size(picture, CHAT_PHOTO_PX)
        elif max(picture.size) < CHAT_FACE_PX:
            picture = display_size(picture, CHAT_FACE_PX)
        picture.save(path, "WEBP", quality=CHAT_IMAGE_QUALITY)
        return path

    def _retire_faces(self, chat: list[dict]) -> tuple[list[dict], list[int]]:
        """The chat as it is to be stored, and the lines whose faces it retires."""
        faces = [i for i, line in enumerate(chat) if line.get("image")]
        retired = faces[: max(len(faces) - self.max_chat_images, 0)]
        if not retired:
            return chat, []
        stored = list(chat)
        for i in retired:
            stored[i] = {**chat[i], "text": RETIRED_FACE, "image": None}
        return stored, retired

    def _remove_unused_images(self, session_id: str, chat: list[dict]) -> None:
        """Removes the session's chat faces its chat no longer shows, up to its newest one (a face
        numbered after it may belong to a turn still running)."""
        folder = self.images_dir / session_id
        shown = {Path(line["image"]).name for line in chat if line.get("image")}
        newest = max((int(m.group(1)) for m in map(CHAT_IMAGE.match, shown) if m), default=0)
        try:
            names = os.listdir(folder)
        except OSError:  # after the commit: a folder that cannot be read keeps its files until the next save
            return
        for name in names:
            match = CHAT_IMAGE.match(name)
            if match and name not in shown and int(match.group(1)) < newest:
                try:
                    (folder / name).unlink()
                except OSError as error:
                    logger.warning("could not remove %s: %s", folder / name, error)

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.data_dir).as_posix()

    def absolute(self, relative: str) -> Path:
        path = (self.data_dir / relative).resolve()
        if self.data_dir not in path.parents:
            raise ValueError(f"{relative!r} is outside the data directory")
        return path

    @staticmethod
    def _check(session_id: str) -> None:
        if not valid_session_id(session_id):
            raise ValueError(f"bad session id {session_id!r}")


# --------------------------------------------------------------------------- schema versions


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Brings the database to ``SCHEMA_VERSION`` in one transaction (a new one is just created)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise ValueError(f"{path} was written by a newer ChatEdit (schema {version}; this one reads up to "
                         f"{SCHEMA_VERSION})")
    db.execute("BEGIN IMMEDIATE")
    try:
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'").fetchone()
        if old and version >= 1:  # the tables as they are, a column or two short
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[step]:
                    db.execute(statement)
            old = None
        if old:  # version 0: one row per session, everything as JSON
            db.execute("DROP INDEX IF EXISTS sessions_updated")
            db.execute("ALTER TABLE sessions RENAME TO sessions_v0")
        for statement in SCHEMA.split(";"):  # not executescript: it would commit first
            db.execute(statement)
        if old:
            _copy_v0(db)
            db.execute("DROP TABLE sessions_v0")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if old:
        logger.info("migrated %s to schema %d", path, SCHEMA_VERSION)
        db.execute("VACUUM")  # the JSON latents' pages go back to the disk


def _copy_v0(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT id, created, updated, backend, state, memory, chat FROM sessions_v0")
    for sid, created, updated, backend, state_json, memory_json, chat_json in rows:  # one at a time
        state = DialogState.from_json(state_json)
        items = {"entries": state.entries, "turns": state.turns,
                 "memory": messages_from_dict(json.loads(memory_json)), "chat": json.loads(chat_json)}
        db.execute("INSERT INTO sessions (id, created, updated, backend, owner, dialog) VALUES (?, ?, ?, ?, NULL, ?)",
                   (sid, created, updated, backend, json.dumps(state.header())))
        for spec in LISTS:
            insert = (f"INSERT INTO {spec.table} (session, idx, {', '.join(spec.columns)}) "
                      f"VALUES (?, ?, {', '.join('?' * len(spec.columns))})")
            db.executemany(insert, [(sid, i, *spec.to_row(item)) for i, item in enumerate(items[spec.table])])


# --------------------------------------------------------------------------- one writer per data dir


class DataDirLock:
    """An OS lock on ``<data dir>/lock``, held until ``release`` or the process ends (the OS lets go
    of it even after ``kill -9``). The holder's pid, and whatever ``note`` adds (host, port), are
    written inside, so a second process is refused with a sentence that names the first."""

    def __init__(self, data_dir: str | Path):
        import fcntl  # POSIX only

        self.path = Path(data_dir).resolve() / "lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise DataDirInUse(f"Another ChatEdit process ({holder}) is using the data directory "
                               f"{self.path.parent}; stop it first, or give this one another --data-dir.") from None
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._about = {"pid": os.getpid()}
        self._write()

    def note(self, **about) -> None:
        """Adds ``about`` (e.g. ``host``, ``port``, ``url``) to what the lock says of its holder."""
        self._about.update({k: v for k, v in about.items() if v is not None})
        self._write()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file lets go of the lock
            self._fd = None

    def _write(self) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.path} was released")
        data = json.dumps(self._about).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def _describe(raw: bytes) -> str:
    """The lock's holder in words: "pid 4242, http://127.0.0.1:7860/"."""
    try:
        about = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        about = {}
    words = [f"pid {about.get('pid', 'unknown')}"]
    if about.get("url"):
        words.append(str(about["url"]))
    elif about.get("host"):
        words.append(f"{about['host']}:{about.get('port') or 'a port of its choice'}")
    return ", ".join(words)


# --------------------------------------------------------------------------- which store


def open_store(location: str | None, data_dir: str | Path, shared_dir: str | Path | None = None,
               exclusive: bool = False, **limits) -> SessionStore:
    """The store at ``location``: ``None`` (or ``sqlite``) for SQLite in ``data_dir``, a
    ``postgresql://USER@HOST/DB`` URL for PostgreSQL, its images in ``shared_dir/images``
    (default: ``data_dir``), a folder every process on the database shares. ``exclusive``: the
    process takes ``data_dir``'s lock either way (its temp files and photos are its own).
    ``limits``: ``max_age_days``, ``max_sessions``, ``max_chat_images``."""
    if location in (None, "", "sqlite"):
        if shared_dir is not None and Path(shared_dir).resolve() != Path(data_dir).resolve():
            raise ValueError(f"a SQLite store keeps its images in its data directory; --shared-dir {shared_dir} "
                             "is for a postgresql:// store")
        return SessionStore(data_dir, exclusive=exclusive, **limits)
    if location.startswith(("postgresql://", "postgres://")):
        from chatedit.store_pg import PostgresStore

        return PostgresStore(location, shared_dir if shared_dir is not None else data_dir,
                             lock_dir=data_dir if exclusive else None, **limits)
    raise ValueError(f"store must be sqlite or a postgresql://USER@HOST/DB URL, got {location!r}")


__all__ = ["DataDirInUse", "DataDirLock", "MIGRATIONS", "RETIRED_FACE", "SCHEMA_VERSION", "SavedSession",
           "SessionConflict", "SessionStore", "StoreError", "open_store", "valid_session_id"]
