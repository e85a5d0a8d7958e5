"""Sessions on disk: SQLite for the conversation and the dialog state, PNG files for the images.

One row per session holds everything needed to bring it back after a page reload or a server
restart: the dialog state (every face of the history as a latent, with its degrees and the turn
log), the language model's memory, and the chat as the page shows it. The images the chat shows
are files under ``images/<session id>/`` beside the database. Old sessions are pruned by age and
by count, files included.

Only the standard library's ``sqlite3``: the store is embedded, nothing to run beside the app.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict

from chatedit.images import to_pil
from chatedit.state import DialogState

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL,      -- DialogState.to_json(): latents, degrees, undo history, turn log
    memory TEXT NOT NULL,     -- the language model's messages, as LangChain dicts
    chat TEXT NOT NULL        -- what the page shows: [{"role", "text", "image"}], image relative to the data dir
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated);
"""


def valid_session_id(session_id: object) -> bool:
    """Session ids are 32 lowercase hex digits; anything else (a path, a quote) is refused."""
    return isinstance(session_id, str) and bool(SESSION_ID.match(session_id))


@dataclass
class SavedSession:
    id: str
    backend: str
    state: DialogState
    memory: list[BaseMessage]
    chat: list[dict] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0


class SessionStore:
    """Sessions in ``data_dir/sessions.sqlite3`` and ``data_dir/images/``; safe to share between threads."""

    def __init__(self, data_dir: str | Path, max_age_days: float = 30.0, max_sessions: int = 1000):
        self.data_dir = Path(data_dir).resolve()
        self.images_dir = self.data_dir / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_days = max_age_days
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.data_dir / "sessions.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----------------------------------------------------------------- sessions

    def save(self, saved: SavedSession) -> None:
        """Writes the whole session in one transaction: a crash leaves the old row or the new one."""
        self._check(saved.id)
        now = time.time()
        row = (saved.id, saved.created or now, now, saved.backend, saved.state.to_json(),
               json.dumps(messages_to_dict(saved.memory)), json.dumps(saved.chat))
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions (id, created, updated, backend, state, memory, chat) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET updated=excluded.updated, backend=excluded.backend, "
                "state=excluded.state, memory=excluded.memory, chat=excluded.chat", row)
        saved.created, saved.updated = row[1], now

    def load(self, session_id: str) -> SavedSession | None:
        if not valid_session_id(session_id):
            return None
        with self._lock:
            row = self._db.execute("SELECT id, backend, state, memory, chat, created, updated FROM sessions WHERE id = ?",
                                   (session_id,)).fetchone()
        if row is None:
            return None
        return SavedSession(row[0], row[1], DialogState.from_json(row[2]), messages_from_dict(json.loads(row[3])),
                            json.loads(row[4]), row[5], row[6])

    def ids(self) -> list[str]:
        """Session ids, most recently used first."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM sessions ORDER BY updated DESC")]

    def delete(self, session_id: str) -> None:
        self._check(session_id)
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        shutil.rmtree(self.images_dir / session_id, ignore_errors=True)

    def prune(self, now: float | None = None) -> list[str]:
        """Deletes sessions unused for ``max_age_days`` and all but the ``max_sessions`` most recent."""
        now = time.time() if now is None else now
        cutoff = now - self.max_age_days * 86400
        with self._lock:
            rows = self._db.execute("SELECT id, updated FROM sessions ORDER BY updated DESC").fetchall()
        doomed = [sid for i, (sid, updated) in enumerate(rows) if updated < cutoff or i >= self.max_sessions]
        for sid in doomed:
            self.delete(sid)
        return doomed

    # ----------------------------------------------------------------- images

    def save_image(self, session_id: str, image: torch.Tensor, name: str) -> Path:
        """Writes ``image`` (3, H, W) as ``images/<session>/<name>.png``; returns the absolute path."""
        self._check(session_id)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(f"bad image name {name!r}")
        folder = self.images_dir / session_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        to_pil(image).save(path)
        return path

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
