"""Sessions in PostgreSQL, for several page processes on one database (``--store postgresql://…``).

The same store as ``chatedit.store.SessionStore`` (the same tables, schema version and migrations,
the same incremental saves and version checks) over a pool of psycopg 3 connections. What
several processes need beyond that:

- A save locks the session's row (``SELECT … FOR UPDATE``) and is refused with
  ``SessionConflict`` when the stored version has moved on since this copy was loaded: a turn
  written by another process is never overwritten.
- ``turn_lock`` is a PostgreSQL advisory lock on the session, held on a connection of its own
  while a turn runs: a turn of the same session in another process waits for it. A process that
  dies mid-turn drops its connection, and with it the lock and its open transaction: the session
  is as its last whole turn left it.
- Pruning passes by a session whose turn lock is held, or that was saved since it was picked.
- The schema's version is the one row of ``schema_version``; a migration takes an advisory lock
  first, so processes starting together migrate once.

Images stay files, under ``<shared dir>/images/``: a folder every page process mounts (the page
serves them as files, so rows of bytes would only be copied back to disk to be shown).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from chatedit.store import MAX_CHAT_IMAGES, MIGRATIONS, SCHEMA, SCHEMA_VERSION, SessionStore, StoreError

logger = logging.getLogger(__name__)

POOL_SIZE = 10  # connections at most: one per turn running (its lock), the rest for loads and saves
CONNECT_TIMEOUT_S = 10.0  # the first connection; waiting for a free one from the pool
TURN_LOCK_TIMEOUT_S = 300.0  # how long a turn waits for the same session's turn in another process
MIGRATION_LOCK = 0x63686174_65646974  # "chatedit": the advisory lock of a migration


class PostgresStore(SessionStore):
    """Sessions in the PostgreSQL database at ``url``, images under ``shared_dir/images``; safe to
    share between threads and between processes. ``lock_dir``: a folder this process takes the
    lock of (``DataDirLock``), e.g. its own data directory; the database is never locked."""

    _errors = (psycopg.Error,)
    _for_update = " FOR UPDATE"
    shared = True  # every page process on the database writes it, whatever folder each one locks

    def __init__(self, url: str, shared_dir: str | Path, max_age_days: float = 30.0, max_sessions: int = 1000,
                 max_chat_images: int = MAX_CHAT_IMAGES, lock_dir: str | Path | None = None,
                 pool_size: int = POOL_SIZE):
        if pool_size < 2:
            raise ValueError(f"pool_size must be at least 2 (a turn's lock and a save), got {pool_size}")
        self._setup(shared_dir, max_age_days, max_sessions, max_chat_images, lock_dir)
        self.url = url
        try:
            # one connection first: the reason at once when the server cannot be reached, and the migration
            with psycopg.connect(url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S)) as conn:
                _migrate(conn, redacted(url))
            self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=CONNECT_TIMEOUT_S,
                                        kwargs={"autocommit": True}, name="chatedit-store", open=True)
        except BaseException as error:
            if self.lock is not None:
                self.lock.release()
            if isinstance(error, psycopg.Error):
                raise StoreError(f"the PostgreSQL store at {redacted(url)} could not be opened: "
                                 f"{redacted(str(error))}") from error
            raise

    def close(self) -> None:
        self._pool.close()
        if self.lock is not None:
            self.lock.release()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Callable[..., Any]]:
        """One transaction on a connection of the pool (a read sees one snapshot of the database),
        handing out ``run(sql, params)`` with SQLite's ``?`` placeholders."""
        with self._pool.connection() as conn, conn.transaction():
            if not write:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield lambda sql, params=(): conn.execute(_placeholders(sql), params)

    @contextmanager
    def turn_lock(self, session_id: str) -> Iterator[None]:
        """The session's advisory lock, held on a connection of its own until the turn ends;
        ``StoreError`` when another process's turn holds it for longer than ``TURN_LOCK_TIMEOUT_S``."""
        self._check(session_id)
        key = lock_key(session_id)
        try:
            conn = self._pool.getconn()
        except psycopg.Error as error:  # every connection busy, or the server gone
            raise StoreError(f"the lock of session {session_id} could not be taken ({error})") from error
        try:
            try:
                conn.execute(f"SET lock_timeout = '{int(TURN_LOCK_TIMEOUT_S * 1000)}ms'")
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            except psycopg.errors.LockNotAvailable as error:
                raise StoreError(f"session {session_id} is busy in another process") from error
            except psycopg.Error as error:
                raise StoreError(f"the lock of session {session_id} could not be taken ({error})") from error
            try:
                yield
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error as error:  # the connection is gone, and the lock with it
                    logger.warning("could not unlock session %s: %s", session_id, error)
        finally:
            self._pool.putconn(conn)

    def _turn_running(self, run: Callable[..., Any], session_id: str) -> bool:
        return not run("SELECT pg_try_advisory_xact_lock(?)", (lock_key(session_id),)).fetchone()[0]


def lock_key(session_id: str) -> int:
    """The session's advisory lock: its id's first 64 bits, as PostgreSQL's signed bigint."""
    key = int(session_id[:16], 16)
    return key - (1 << 64) if key >= 1 << 63 else key


def _placeholders(sql: str) -> str:
    """The store's SQL with psycopg's placeholders (the store's statements hold no other ``?``)."""
    return sql.replace("?", "%s")


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# --------------------------------------------------------------------------- schema versions


def postgres_schema() -> list[str]:
    """The SQLite store's schema in PostgreSQL's types, statement by statement."""
    schema = SCHEMA.replace(" BLOB ", " BYTEA ").replace(" REAL ", " DOUBLE PRECISION ")
    return [statement for statement in schema.split(";") if statement.strip()]


def _migrate(conn: psycopg.Connection, where: str) -> None:
    """Brings the database to ``SCHEMA_VERSION`` in one transaction, one process at a time."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = None if row is None else row[0]
        if version == SCHEMA_VERSION:
            return
        if version is not None and version > SCHEMA_VERSION:
            raise ValueError(f"{where} was written by a newer ChatEdit (schema {version}; this one reads up to "
                             f"{SCHEMA_VERSION})")
        if version is None:  # a new database: today's tables
            for statement in postgres_schema():
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
            return
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
    logger.info("migrated %s to schema %d", where, SCHEMA_VERSION)


__all__ = ["PostgresStore", "lock_key", "redacted"]
