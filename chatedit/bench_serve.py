"""``chatedit bench serve``: the chat page under load and faults, driven over HTTP as a browser drives it.

A real server (``python -m chatedit.cli serve``) is started on a loopback port with a fresh data
directory. Simulated users then call the page's own endpoints (``start``, ``send``, ``slider_<name>``,
``undo``, ``redo``) through Gradio's queue (``POST /gradio_api/call/<endpoint>``, then its event
stream), each keeping its own session id as the browser keeps it. Which output is which component
is read from the page's ``/config`` (the session state, ``#chat``, ``#preview``, ``#slider-<name>``),
not from the order the endpoint lists them in.

Each user's first turn uploads a portrait; the following turns cycle through a text edit, a
slider edit, undo, redo and another text edit, so any five turns in a row hold the same mix and
``latency_growth`` (mean of the last 5 turns / mean of turns 2–6) compares like with like.

Measured during the load: errors (failed requests, error events, exceptions in the server's log),
cross-session leaks (a session id that is not the user's own, a line in the chat the user never
sent, a face at the end other than the one its own last turn showed), turn and first-frame latency
(the first streamed preview image), RSS of the server process, bytes added to the data directory.

Then the fault round: ``faults`` client disconnects mid-turn (the stream closed after the first
frame; the turn must still complete, reply included) and ``faults`` ``kill -9`` of the server
mid-turn followed by a restart. While the server is down the store is read directly: a
half-applied turn is a chat line without its reply, a chat whose requests differ from the turn
log, or a face other than the one the last logged turn ended on; a lost turn is one whose reply
a client saw but which is not in the store; ``PRAGMA integrity_check`` must answer ``ok``.

With ``store`` (``--store postgresql://…``) the servers keep their sessions in that database and
their images in a shared folder; with ``pages`` (``--pages 2``) that many page processes serve the
same store, each user's turns alternating between them (the same session opened in every one), and
a kill -9 stops the page that is serving the turn while the others go on. ``conflicts`` counts the
saves a store refused as based on a stale copy (undone, never written over) and ``busy`` the turns
refused after waiting for another process's turn on the same session.

Every loop is bounded by a count and a deadline; only loopback addresses are used.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Self

import httpx
import psutil

from chatedit.progress import bar

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
API = "gradio_api"
STARTUP_TIMEOUT_S = 240.0  # loading the models on a busy machine
TURN_TIMEOUT_S = 300.0  # one request, queue wait included
SETTLE_TIMEOUT_S = 60.0  # how long a disconnected turn may take to finish server-side
POLL_S = 0.5  # between two looks at a server starting or a turn finishing
MAX_STREAM_LINES = 100_000  # lines of one event stream (a turn streams a few hundred)
CYCLE = ("text", "slider", "undo", "redo", "text")  # turns 2, 3, …; any five in a row hold the same mix
EDITS = ("upload", "text", "slider")  # the turns that make a new face (undo and redo move in the history)
SLIDER_ORDER = ("smiling", "bangs", "age", "eyeglasses")  # tried in turn; attributes the page lacks are skipped
SERVER_ERROR = re.compile(r"^(ERROR|CRITICAL|Traceback)", re.MULTILINE)
RAISED = re.compile(r"^[\w.]+(Error|Exception|Interrupt)\b.*$", re.MULTILINE)  # a traceback's last line


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """``chatedit serve`` in a subprocess on a loopback port; its output goes to ``log``. ``store``:
    a ``postgresql://`` URL (None: SQLite in ``data_dir``), its images in ``shared_dir``."""

    def __init__(self, data_dir: Path, log: Path, backend: str, store: str | None = None,
                 shared_dir: Path | None = None, workers: tuple[str, ...] = ()):
        self.data_dir, self.log, self.backend = data_dir, log, backend
        self.store, self.shared_dir = store, shared_dir
        self.workers = workers  # ``serve``'s worker flags, e.g. --workers ray --ray-address … --replicas 2
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        port = free_port()
        self.url = f"http://{HOST}:{port}/"
        cmd = [sys.executable, "-m", "chatedit.cli", "serve", "--host", HOST, "--port", str(port),
               "--data-dir", str(self.data_dir), "--backend", self.backend]
        if self.store is not None:
            cmd += ["--store", self.store, "--shared-dir", str(self.shared_dir)]
        cmd += list(self.workers)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        with self.log.open("a") as out:
            out.write(f"--- start on port {port}\n")
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / POLL_S) + 1):
            if time.monotonic() > deadline:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}config", timeout=5).status_code == 200:
                    logger.info("server up on %s (pid %d)", self.url, self.proc.pid)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(POLL_S)
        self.kill()
        raise TimeoutError(f"the server did not answer on {self.url} within {timeout_s:g} s: {self.log_tail()}")

    def kill(self) -> None:
        """``kill -9``: no cleanup of any kind runs in the server."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """A clean stop (SIGTERM), ``kill -9`` if it has not exited within 30 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_mb(self) -> float | None:
        """Resident memory of the server and its children, in MB."""
        try:
            proc = psutil.Process(self.proc.pid)
            return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
        except (psutil.Error, AttributeError):
            return None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_text()[-chars:]


class Pages:
    """The page processes of one run, on one store: each a ``Server``; read as one where the
    benchmark measures the whole (memory, logs), one by one where it kills."""

    def __init__(self, servers: list[Server]):
        self.servers = servers
        self.backend, self.store = servers[0].backend, servers[0].store
        self.replicas = 0  # on Ray Serve: the deployment's replicas (0: the backend runs in each page)

    @property
    def url(self) -> str:
        return self.servers[0].url

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def folders(self) -> list[Path]:
        """Where the run writes files: each page's data dir, and the shared dir."""
        shared = [self.servers[0].shared_dir] if self.store is not None else []
        return [server.data_dir for server in self.servers] + shared

    def serving(self, url: str) -> Server:
        return next(server for server in self.servers if server.url == url)

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def rss_mb(self) -> float | None:
        sizes = [server.rss_mb() for server in self.servers]
        return None if None in sizes else sum(sizes)

    def log_text(self) -> str:
        return "".join(server.log_text() for server in self.servers)

    def log_tail(self, chars: int = 2000) -> str:
        return " | ".join(server.log_tail(chars // len(self.servers)) for server in self.servers)


class RssSampler:
    """The server's peak RSS, sampled every ``interval_s`` in a thread."""

    def __init__(self, server: Server | Pages, interval_s: float = 0.25):
        self.server, self.interval_s, self.peak = server, interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.server.rss_mb() or 0.0)


# --------------------------------------------------------------------------- the page's HTTP API


@dataclass(frozen=True)
class Page:
    """Where each component sits in an endpoint's outputs, read from the page's ``/config``."""

    outputs: dict[str, dict[str, int]]  # endpoint → role ("session", "chat", "preview", "slider:<name>") → index
    sliders: tuple[str, ...]  # attribute names, as the page shows them

    @classmethod
    def read(cls, url: str) -> Page:
        return cls.from_config(httpx.get(f"{url}config", timeout=30).raise_for_status().json())

    @classmethod
    def from_config(cls, config: dict) -> Page:
        components = {c["id"]: c for c in config["components"]}
        outputs = {}
        for dep in config["dependencies"]:
            if not isinstance(dep.get("api_name"), str):
                continue
            roles = {}
            for i, cid in enumerate(dep["outputs"]):
                role = _role(components.get(cid, {}))
                if role is not None:
                    roles.setdefault(role, i)
            outputs[dep["api_name"]] = roles
        sliders = tuple(r.split(":", 1)[1] for r in outputs.get("start", {}) if r.startswith("slider:"))
        missing = {"session", "chat", "preview"} - set(outputs.get("start", {}))
        if missing or "send" not in outputs or not sliders:
            raise ValueError(f"the page lacks what the benchmark drives: {sorted(missing)} of start's "
                             f"outputs, endpoints {sorted(outputs)}, sliders {sliders}")
        return cls(outputs, sliders)


def _role(component: dict) -> str | None:
    kind, elem_id = component.get("type"), (component.get("props") or {}).get("elem_id") or ""
    if kind == "browserstate":
        return "session"
    if elem_id in ("chat", "preview"):
        return elem_id
    if kind == "slider" and elem_id.startswith("slider-"):
        return f"slider:{elem_id[len('slider-'):]}"
    return None


@dataclass
class Answer:
    """One request to an endpoint as the client saw it."""

    outputs: list | None = None  # the final outputs (the ``complete`` event)
    latency_s: float | None = None  # until ``complete``
    first_frame_s: float | None = None  # until the first preview image streamed
    frame_s: list[float] = field(default_factory=list)  # when each preview image streamed
    error: str | None = None
    closed_early: bool = False  # the client closed the stream on purpose


def _is_image(value) -> bool:
    """An image payload, or an update of a component whose value is one (an image with new alt text)."""
    if isinstance(value, dict) and value.get("__type__") == "update":
        value = value.get("value")
    return isinstance(value, dict) and "__type__" not in value and bool(value.get("path") or value.get("url"))


class Tab:
    """One browser tab: its own HTTP connection and its own session id."""

    def __init__(self, url: str, page: Page):
        self.url, self.page = url, page
        self.session = ""
        self.http = httpx.Client(timeout=httpx.Timeout(TURN_TIMEOUT_S, connect=10.0))

    def close(self) -> None:
        self.http.close()

    def call(self, endpoint: str, data: list, on_first_frame=None, stop_after_first_frame: bool = False) -> Answer:
        """Calls ``endpoint`` through the queue and reads its event stream to the end (or to the
        first frame when ``stop_after_first_frame``: the stream is then closed, as a closed tab does)."""
        answer, began = Answer(), time.perf_counter()
        deadline = time.monotonic() + TURN_TIMEOUT_S
        try:
            response = self.http.post(f"{self.url}{API}/call/{endpoint}", json={"data": data})
            event_id = response.raise_for_status().json()["event_id"]
            with self.http.stream("GET", f"{self.url}{API}/call/{endpoint}/{event_id}") as stream:
                kind = None
                for count, line in enumerate(stream.iter_lines()):
                    if time.monotonic() > deadline or count > MAX_STREAM_LINES:
                        raise TimeoutError(f"{endpoint} took over {TURN_TIMEOUT_S:g} s or {MAX_STREAM_LINES} lines")
                    if line.startswith("event:"):
                        kind = line[len("event:"):].strip()
                        continue
                    if not line.startswith("data:") or kind == "heartbeat":
                        continue
                    payload = json.loads(line[len("data:"):])
                    if kind == "error":
                        answer.error = f"{endpoint}: error event {str(payload)[:200]}"
                        return answer
                    if kind == "generating" and self._frame(endpoint, payload):
                        answer.frame_s.append(time.perf_counter() - began)
                    if answer.first_frame_s is None and answer.frame_s:
                        answer.first_frame_s = answer.frame_s[0]
                        if on_first_frame is not None:
                            on_first_frame()
                        if stop_after_first_frame:
                            answer.closed_early = True
                            return answer
                    if kind == "complete":
                        answer.outputs, answer.latency_s = payload, time.perf_counter() - began
                        at = self.page.outputs[endpoint].get("session")
                        if at is not None and isinstance(payload[at], str) and payload[at]:
                            self.session = payload[at]  # what the browser keeps for its next request
                        return answer
            answer.error = f"{endpoint}: the stream ended without a result"
        except (httpx.HTTPError, TimeoutError, ValueError, KeyError, IndexError) as error:
            answer.error = f"{endpoint}: {type(error).__name__}: {str(error)[:200]}"
        return answer

    def _frame(self, endpoint: str, payload) -> bool:
        """A streamed frame: an image in the preview while the rest of the page waits (the session
        output still unchanged), not the turn's closing view."""
        roles = self.page.outputs[endpoint]
        if not isinstance(payload, list) or roles.get("preview") is None:
            return False
        session = payload[roles["session"]] if roles.get("session") is not None else {"__type__": "update"}
        return _is_image(payload[roles["preview"]]) and isinstance(session, dict)

    def start(self) -> Answer:
        return self.call("start", [self.session])

    def upload(self, name: str, png: bytes) -> str:
        """Uploads a file as the page's message box does; returns the server's path for it."""
        response = self.http.post(f"{self.url}{API}/upload", files={"files": (name, png, "image/png")})
        return response.raise_for_status().json()[0]

    # ----------------------------------------------------------------- reading an answer

    def degrees(self, outputs: list, endpoint: str = "start") -> dict[str, int]:
        roles = self.page.outputs[endpoint]
        return {name: round(float(outputs[roles[f"slider:{name}"]])) for name in self.page.sliders}

    def chat(self, outputs: list, endpoint: str = "start") -> list[tuple[str, str | None]]:
        """The chat as (role, text) pairs; a face is ``(role, None)``."""
        lines = []
        for message in outputs[self.page.outputs[endpoint]["chat"]] or []:
            content = message.get("content")
            parts = content if isinstance(content, list) else [content]
            for part in parts:
                if isinstance(part, dict) and part.get("type") == "text":
                    lines.append((message["role"], part.get("text")))
                elif isinstance(part, str):
                    lines.append((message["role"], part))
                else:
                    lines.append((message["role"], None))
        return lines


def user_lines(chat: list[tuple[str, str | None]]) -> list[str]:
    return [text for role, text in chat if role == "user" and text is not None]


# --------------------------------------------------------------------------- simulated users


@dataclass
class Turn:
    user: int
    index: int
    kind: str  # upload, text, slider, undo, redo
    latency_s: float | None
    first_frame_s: float | None
    error: str | None
    frame_gaps_s: tuple[float, ...] = ()  # between the preview images of the turn, first to last


@dataclass
class User:
    """A simulated person: a tab, a unique upload name, and the log of what they saw."""

    index: int
    tab: Tab
    lines: list[str] = field(default_factory=list)  # their requests whose reply they saw, as the chat shows them
    sent: set[str] = field(default_factory=set)  # every request of theirs the chat has shown
    degrees: dict[str, int] = field(default_factory=dict)  # the face their last answer showed
    turns: list[Turn] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def upload_name(self) -> str:
        return f"bench-user-{self.index:03d}.png" if self.index >= 0 else "bench-warm-up.png"

    def open(self) -> None:
        """Opens a new session, as a first page load does."""
        opened = self.tab.start()
        if opened.outputs is None:
            raise RuntimeError(f"opening a session failed: {opened.error}")
        self.degrees, self.lines = self.tab.degrees(opened.outputs), user_lines(self.tab.chat(opened.outputs))
        self.sent.update(self.lines)


def _text_edit(degrees: dict[str, int], turn: int) -> str:
    """A text request that changes the face whatever its degrees now."""
    options = [("age", "make the person look older", "make the person look younger"),
               ("eyeglasses", "add thick glasses", "remove the glasses"),
               ("smiling", "make them smile more", "make them smile less")]
    name, up, down = options[turn % len(options)]
    return up if degrees.get(name, 0) < 3 else down


def _portrait_png(seed: int) -> bytes:
    """A rendered portrait of the built-in world, 300 px, as PNG bytes (what a person uploads)."""
    from chatedit.images import to_pil
    from chatedit.tools.builtin.renderer import render, sample_portraits

    buffer = io.BytesIO()
    to_pil(render(sample_portraits(1, seed))[0]).resize((300, 300)).save(buffer, format="PNG")
    return buffer.getvalue()


def run_turn(user: User, index: int, kind: str, **call) -> Answer:
    """One turn of ``user``: the request for ``kind``, its answer checked against the user's own log."""
    tab, page = user.tab, user.tab.page
    if kind == "upload":
        path = tab.upload(user.upload_name, _portrait_png(9_000 + user.index))
        endpoint, expected = "send", f"[uploaded {user.upload_name}]"
        data = [{"text": "", "files": [{"path": path, "orig_name": user.upload_name,
                                        "meta": {"_type": "gradio.FileData"}}]}, tab.session]
    elif kind == "text":
        expected = _text_edit(user.degrees, index)
        endpoint, data = "send", [{"text": expected, "files": []}, tab.session]
    elif kind == "slider":
        names = [n for n in SLIDER_ORDER if n in page.sliders] or list(page.sliders)
        name = names[index % len(names)]
        endpoint, expected = f"slider_{name}", "[slider]"
        data = [0 if user.degrees.get(name, 0) >= 3 else 4, tab.session]
    else:  # undo, redo
        endpoint, expected = kind, f"[{kind}]"
        data = [tab.session]
    session = tab.session
    answer = tab.call(endpoint, data, **call)
    if answer.outputs is not None:
        _check_answer(user, answer.outputs, endpoint, session, expected)
    return answer


def _check_answer(user: User, outputs: list, endpoint: str, session: str, expected: str) -> None:
    """The answer shows this user's own session: its id, its requests in order, one new one."""
    tab = user.tab
    if tab.session != session:
        user.leaks.append(f"turn answered with session {str(tab.session)[:8]} instead of {session[:8]}")
        tab.session = session
    lines = user_lines(tab.chat(outputs, endpoint))
    new = lines[len(user.lines):]
    if lines[: len(user.lines)] == user.lines and len(new) == 1 and new[0].startswith(expected):
        user.sent.add(new[0])
    else:  # a request the user never sent is a leak; one of theirs missing or out of order, an error
        foreign = [ln for ln in lines if ln not in user.sent and not ln.startswith(expected)]
        where = user.leaks if foreign else user.errors
        where.append(f"chat after {expected!r}: {len(lines)} requests, {len(user.lines)} before, "
                     f"unexpected {(foreign or new)[:3]}")
        user.sent.update(ln for ln in new if ln.startswith(expected))
    user.lines = lines  # go on from what the page shows, so one fault is counted once
    user.degrees = tab.degrees(outputs, endpoint)


def run_user(user: User, turns: int, deadline: float, done: Callable[[], object] = lambda: None,
             urls: list[str] | None = None) -> None:
    """The user's session: an upload, then text edits, slider edits, undo and redo in turn;
    ``done()`` after each turn. With several page ``urls``, its turns go to each in turn."""
    for i in range(turns):
        if time.monotonic() > deadline:
            user.errors.append(f"stopped by the time limit after {i} turns")
            return
        if urls:
            user.tab.url = urls[(user.index + i) % len(urls)]
        kind = "upload" if i == 0 else CYCLE[(i - 1) % len(CYCLE)]
        try:
            answer = run_turn(user, i, kind)
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as error:
            answer = Answer(error=f"{kind}: {type(error).__name__}: {str(error)[:200]}")
        gaps = tuple(b - a for a, b in zip(answer.frame_s, answer.frame_s[1:]))
        user.turns.append(Turn(user.index, i, kind, answer.latency_s, answer.first_frame_s, answer.error, gaps))
        if answer.error:
            user.errors.append(answer.error)
        done()


def final_check(user: User, others: list[str]) -> None:
    """The page reopened at the end shows the face the user's last answer showed and only their chat."""
    answer = user.tab.start()
    if answer.outputs is None:
        user.errors.append(f"reopening the session: {answer.error}")
        return
    lines = user_lines(user.tab.chat(answer.outputs))
    if user.tab.degrees(answer.outputs) != user.degrees:
        user.leaks.append(f"final face {user.tab.degrees(answer.outputs)} != last answer {user.degrees}")
    if any(f"[uploaded {name}]" in lines for name in others) or [ln for ln in lines if ln not in user.sent]:
        user.leaks.append(f"final chat holds requests this user never sent: "
                          f"{[ln for ln in lines if ln not in user.sent][:3]}")
    elif lines != user.lines:
        user.errors.append(f"final chat has {len(lines)} requests, the user saw {len(user.lines)} answered")


# --------------------------------------------------------------------------- the store, read directly


@dataclass(frozen=True)
class StoredSession:
    """What the fault checks need of a stored session."""

    id: str
    chat: tuple[tuple[str, str | None], ...]  # (role, text); a face is (role, None)
    turn_requests: tuple[str, ...]  # the turn log: what the person said, in order
    last_turn_degrees: dict | None  # the degrees the last logged turn ended on
    degrees: dict | None  # the face stored as the one shown


def read_store(data_dir: Path, location: str | None = None, shared_dir: Path | None = None) -> list[StoredSession]:
    """Every session in the store, read through ``SessionStore`` (the server is down, or, on a
    shared store, the page that was killed)."""
    from chatedit.store import open_store

    store = open_store(location, data_dir, shared_dir=shared_dir)
    try:
        sessions = []
        for sid in store.ids():
            saved = store.load(sid)
            if saved is None:
                continue
            state = saved.state
            sessions.append(StoredSession(
                sid, tuple((m["role"], m["text"]) for m in saved.chat), tuple(t.user for t in state.turns),
                dict(state.turns[-1].degrees) if state.turns else None,
                dict(state.current.degrees) if state.has_face else None))
        return sessions
    finally:
        store.close()


def integrity(data_dir: Path, location: str | None = None) -> list[str]:
    """``PRAGMA integrity_check`` of every SQLite database in the data directory: the problems found.
    A PostgreSQL store: every list row belongs to a stored session and every list is gapless."""
    if location is not None:
        return _postgres_integrity(location)
    databases = [p for p in sorted(data_dir.iterdir()) if p.suffix in (".sqlite3", ".sqlite", ".db")]
    if not databases:
        return [f"no SQLite database in {data_dir}"]
    problems = []
    for path in databases:
        db = sqlite3.connect(path)
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as error:
            rows = [str(error)]
        finally:
            db.close()
        problems += [f"{path.name}: {r}" for r in rows if r != "ok"]
    return problems


def _postgres_integrity(location: str) -> list[str]:
    import psycopg

    problems = []
    with psycopg.connect(location) as conn:
        for table in ("entries", "turns", "memory", "chat"):
            orphans, gaps = conn.execute(
                f"SELECT count(*) FILTER (WHERE s.id IS NULL), count(DISTINCT l.session) FILTER "
                f"(WHERE l.idx >= (SELECT count(*) FROM {table} m WHERE m.session = l.session)) "
                f"FROM {table} l LEFT JOIN sessions s ON s.id = l.session").fetchone()
            problems += [f"{table}: {orphans} rows of no session"] if orphans else []
            problems += [f"{table}: {gaps} sessions with a gap in their rows"] if gaps else []
    return problems


def _store_bytes(location: str | None) -> dict[str, int]:
    """The PostgreSQL database's size, as an entry of the disk measured (SQLite's file is in the data dir)."""
    if location is None:
        return {}
    import psycopg

    with psycopg.connect(location) as conn:
        return {"postgresql": conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]}


def half_applied(session: StoredSession) -> set[tuple]:
    """Turns begun but not finished in ``session``: a request without its reply, requests the turn log
    does not hold (or the other way round), a face the last logged turn did not end on."""
    found = set()
    chat = session.chat
    for i, (role, text) in enumerate(chat):
        if role != "user" or not text:  # a picture in the person's line (the photo sent) belongs to its request
            continue
        after = chat[i + 1:]
        upto = next((j for j, (r, t) in enumerate(after) if r == "user" and t), len(after))
        if not any(r == "assistant" and t for r, t in after[:upto]):
            found.add((session.id, "no reply", i, text))
    asked = [t for r, t in chat if r == "user" and t and not t.startswith("[uploaded")]
    logged = [t for t in session.turn_requests if not t.startswith("[uploaded")]
    if asked != logged:
        first = next((i for i, (a, b) in enumerate(zip(asked, logged)) if a != b), min(len(asked), len(logged)))
        found.add((session.id, "chat and turn log differ from request", first))
    if session.last_turn_degrees is not None and session.degrees != session.last_turn_degrees:
        found.add((session.id, "face differs from the last logged turn", len(session.turn_requests)))
    return found


def lost(users: list[User], stored: dict[str, StoredSession]) -> set[tuple]:
    """Requests whose reply a user saw that the store does not hold (matched in order)."""
    missing = set()
    for user in users:
        session = stored.get(user.tab.session)
        held = [t for r, t in session.chat if r == "user" and t] if session else []
        at = 0  # where the next request is looked for: after the last one found
        for k, line in enumerate(user.lines):
            if line in held[at:]:
                at = held.index(line, at) + 1
            else:
                missing.add((user.index, k, line))
    return missing


# --------------------------------------------------------------------------- the run


def _disk_by_entry(folder: Path) -> dict[str, int]:
    """Bytes under each top-level entry of ``folder`` (``images``, ``tmp``, the database files, …)."""
    sizes = {}
    for entry in folder.iterdir():
        try:
            sizes[entry.name] = _disk_bytes(entry) if entry.is_dir() else entry.stat().st_size
        except OSError:
            pass  # removed while walking
    return sizes


def _disk_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a temp file removed while walking
    return total


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, round(q * (len(values) - 1)))], 3)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _growth(users: list[User]) -> float | None:
    """Mean latency of every session's last 5 turns over that of its turns 2–6 (turn 1 is the upload)."""
    first, last = [], []
    for user in users:
        times = [t.latency_s for t in user.turns]
        if len(times) < 2 or any(t is None for t in times):
            continue
        first += times[1:6]
        last += times[max(1, len(times) - 5):]
    a, b = _mean(first), _mean(last)
    return round(b / a, 3) if a and b else None


def _long_edit(user: User) -> str:
    """A request whose walk takes several steps (three degrees of age), to break into."""
    text = "make the person look much older" if user.degrees.get("age", 0) < 3 else "make the person look much younger"
    user.sent.add(text)
    return text


class FaultRound:
    """Disconnects and ``kill -9`` mid-turn; the store checked after each crash and at the end."""

    def __init__(self, server: Pages, page: Page, users: list[User], settle_s: float = SETTLE_TIMEOUT_S):
        self.server, self.page, self.users, self.settle_s = server, page, users, settle_s
        self.half_applied: set[tuple] = set()
        self.lost: set[tuple] = set()
        self.integrity: list[str] = []
        self.disconnects = self.kills = self.disconnects_incomplete = 0
        self.killed_turns_kept = 0  # killed mid-turn yet in the store whole (the rest were rolled back)
        self.down = False  # the server did not come back after a kill
        self.notes: list[str] = []
        self.store_errors: list[str] = []

    def disconnect(self, user: User, deadline: float) -> None:
        """Closes the stream at the first frame; the turn must then finish on its own, reply included."""
        text = _long_edit(user)
        before = len(user.lines)
        answer = user.tab.call("send", [{"text": text, "files": []}, user.tab.session], stop_after_first_frame=True)
        if not answer.closed_early:
            self.notes.append(f"disconnect: no frame to close the stream at ({answer.error or 'the turn finished'})")
        settle = min(time.monotonic() + self.settle_s, deadline)
        finished = False
        for _ in range(int(self.settle_s / POLL_S) + 1):
            if finished or time.monotonic() > settle:
                break
            time.sleep(POLL_S)
            shown = user.tab.start()
            if shown.outputs is not None:
                chat = user.tab.chat(shown.outputs)
                last_request = max((i for i, (r, _) in enumerate(chat) if r == "user"), default=-1)
                finished = (text in user_lines(chat)[before:]
                            and any(r == "assistant" and t for r, t in chat[last_request + 1:]))
        self.disconnects_incomplete += not finished
        shown = user.tab.start()  # go on from what the page shows now, as the person would
        if shown.outputs is not None:
            user.lines, user.degrees = user_lines(user.tab.chat(shown.outputs)), user.tab.degrees(shown.outputs)
        self.disconnects += 1
        follow = run_turn(user, 1, "text")  # the next request, as the person typed it
        if follow.error:
            user.errors.append(f"after a disconnect: {follow.error}")

    def kill(self, user: User) -> None:
        """``kill -9`` at the first frame of a turn, the store checked while the server is down, a restart."""
        text, before = _long_edit(user), len(user.lines)
        victim = self.server.serving(user.tab.url)
        answer = user.tab.call("send", [{"text": text, "files": []}, user.tab.session],
                               on_first_frame=victim.kill, stop_after_first_frame=True)
        if not answer.closed_early:
            self.notes.append(f"kill: no frame to kill at ({answer.error or 'the turn finished'}); killed after it")
        victim.kill()
        self.kills += 1
        stored = self.check_store().get(user.tab.session)
        self.killed_turns_kept += bool(stored and text in [t for r, t in stored.chat if r == "user"][before:])
        self.restart(victim)

    def check_store(self) -> dict[str, StoredSession]:
        """Checks the store as the server left it; returns its sessions by id."""
        first = self.server.servers[0]
        try:
            self.integrity += integrity(first.data_dir, self.server.store)
            stored = {s.id: s for s in read_store(first.data_dir, self.server.store, first.shared_dir)}
        except (sqlite3.Error, RuntimeError, ValueError, KeyError, OSError) as error:  # a finding, not a crash
            self.store_errors.append(f"{type(error).__name__}: {str(error)[:200]}")
            return {}
        for session in stored.values():
            self.half_applied |= half_applied(session)
        self.lost |= lost(self.users, stored)
        return stored

    def restart(self, server: Server) -> None:
        old = server.url
        try:
            server.start()
        except (RuntimeError, TimeoutError) as error:  # nothing more can be measured; what was, is reported
            self.down = True
            self.notes.append(f"the server did not come back: {str(error)[:300]}")
            return
        for user in self.users:
            user.tab.url = server.url if user.tab.url == old else user.tab.url
            shown = user.tab.start()
            if shown.outputs is None:
                user.errors.append(f"after a restart: {shown.error}")
                continue
            user.lines, user.degrees = user_lines(user.tab.chat(shown.outputs)), user.tab.degrees(shown.outputs)


def run(users: int = 8, turns: int = 40, faults: int = 5, backend: str = "builtin",
        time_limit_s: float = 3600.0, progress: bool = False, store: str | None = None, pages: int = 1,
        workers: str | None = None, replicas: int = 1) -> dict:
    """Starts ``pages`` servers on one store (``None``: SQLite, one page), runs the load and the
    fault round, and returns the measurements. ``workers="ray"``: a Ray cluster is started here and
    the pages run the backend on it as a Serve deployment of ``replicas`` replicas."""
    if users < 1 or turns < 1 or faults < 0 or time_limit_s <= 0:
        raise ValueError(f"users and turns must be at least 1, faults at least 0 and the time limit positive; "
                         f"got users={users}, turns={turns}, faults={faults}, time_limit_s={time_limit_s}")
    if pages < 1 or (pages > 1 and store is None):
        raise ValueError(f"--pages {pages}: several page processes need a shared store (--store postgresql://…)")
    if workers not in (None, "ray") or replicas < 1:
        raise ValueError(f"--workers is ray or nothing and --replicas at least 1, got {workers!r} and {replicas}")
    deadline = time.monotonic() + time_limit_s
    with tempfile.TemporaryDirectory(prefix="chatedit-bench-serve-") as tmp, ray_cluster(workers, replicas) as flags:
        servers = []
        for k in range(pages):
            data_dir = Path(tmp) / (f"data{k}" if pages > 1 else "data")
            data_dir.mkdir()
            servers.append(Server(data_dir, Path(tmp) / f"server{k}.log", backend, store,
                                  Path(tmp) / "shared" if store is not None else None, workers=flags))
        server = Pages(servers)
        server.replicas = replicas if workers else 0
        started = time.perf_counter()
        server.start()
        try:
            return _run(server, users, turns, faults, deadline, startup_s=time.perf_counter() - started,
                        progress=progress)
        finally:
            server.stop()


@contextmanager
def ray_cluster(workers: str | None, replicas: int):
    """``serve``'s worker flags for a Ray cluster started here for the run (with room for every
    replica, one CPU each), shut down after it; one this process is already connected to is used
    and left running (its Serve application, if any, is what the pages join). No flags, and no
    cluster, without ``workers``."""
    if workers is None:
        yield ()
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    mine = not ray.is_initialized()
    if mine:
        ray.init(num_cpus=max(replicas, 2), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        yield ("--workers", "ray", "--ray-address", address, "--replicas", str(replicas))
    finally:
        if mine:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()


def replicas_rss_mb() -> float | None:
    """Resident memory of the Serve replicas on this machine, in MB (None: none running)."""
    sizes = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("ServeReplica" in part for part in proc.info["cmdline"] or ()):
                sizes.append(proc.memory_info().rss)
        except psutil.Error:
            continue
    return round(sum(sizes) / 2**20, 1) if sizes else None


def _run(server: Pages, n_users: int, turns: int, faults: int, deadline: float, startup_s: float,
         progress: bool = False) -> dict:
    # 1. the page's API, and a warm-up turn that loads what the first turns would otherwise pay for
    page = Page.read(server.url)
    rss_start = server.rss_mb()
    warm = User(-1, Tab(server.url, page))
    warm.open()
    for kind in ("upload", "text"):
        answer = run_turn(warm, 0, kind)
        if answer.error:
            raise RuntimeError(f"the warm-up {kind} failed: {answer.error}; server log: {server.log_tail()}")
    warm.tab.close()
    rss_warm, disk_warm = server.rss_mb(), _disk_of(server)
    log_from = len(server.log_text())

    # 2. the load: every user in a thread of its own, each turn waiting for the last one's answer
    users = [User(i, Tab(server.urls[i % len(server.urls)], page)) for i in range(n_users)]  # spread over the pages
    for user in users:
        user.open()
    logger.info("warm-up done; %d users × %d turns", n_users, turns)
    began = time.perf_counter()
    with RssSampler(server) as sampler, ThreadPoolExecutor(n_users, thread_name_prefix="bench-user") as pool, \
            bar(total=n_users * turns, desc="bench serve: load", unit="turn", show=progress) as turns_done:
        urls = server.urls if len(server.urls) > 1 else None  # every session served by every page in turn
        for future in [pool.submit(run_user, user, turns, deadline, turns_done.update, urls) for user in users]:
            future.result()
    wall_s = time.perf_counter() - began
    for user in users:
        final_check(user, [u.upload_name for u in users if u is not user])
    rss_end, disk_end = server.rss_mb(), _disk_of(server)
    server_errors = len(SERVER_ERROR.findall(server.log_text()[log_from:]))

    # 3. the fault round: disconnects, then kill -9 and restarts; the store read after each crash and at the end
    settle_s = min(SETTLE_TIMEOUT_S, max(15.0, 3 * (_percentile([t.latency_s for u in users for t in u.turns
                                                                 if t.latency_s is not None], 0.95) or 0)))
    fault_round = FaultRound(server, page, users, settle_s)
    logger.info("load done in %.1f s; %d disconnects and %d kill -9 next", time.perf_counter() - began, faults, faults)
    for i in range(faults):
        if time.monotonic() < deadline:
            fault_round.disconnect(users[i % n_users], deadline)
    for i in range(faults):
        if time.monotonic() < deadline and not fault_round.down:
            fault_round.kill(users[i % n_users])
    server.stop()
    fault_round.check_store()
    for user in users:
        user.tab.close()

    # 4. the numbers
    done = [t for u in users for t in u.turns if t.error is None and t.latency_s is not None]
    edits = sum(t.kind in EDITS for t in done)
    frames = [t.first_frame_s for t in done if t.first_frame_s is not None and t.kind in EDITS]
    gaps = [g * 1000 for t in done if t.kind in EDITS for g in t.frame_gaps_s]
    grown_by_entry = {name: disk_end.get(name, 0) - disk_warm.get(name, 0) for name in {*disk_end, *disk_warm}}
    grown = sum(grown_by_entry.values())
    load_errors = [e for u in users for e in u.errors]
    log = server.log_text()
    return {
        "backend": server.backend, "store": "postgresql" if server.store else "sqlite", "pages": len(server.servers),
        "workers": f"ray ({server.replicas} replica{'s' if server.replicas > 1 else ''})" if server.replicas
        else "in-process", "replicas_rss_mb": replicas_rss_mb() if server.replicas else None,
        "conflicts": log.count("SessionConflict"), "busy": log.count("busy in another process"),
        "users": n_users, "turns_per_user": turns, "turns": len(done),
        "edits": edits, "errors": len(load_errors) + server_errors + fault_round.down, "server_errors_logged": server_errors,
        "error_examples": load_errors[:5], "leaks": sum(len(u.leaks) for u in users),
        "leak_examples": [leak for u in users for leak in u.leaks][:5],
        "p50_s": _percentile([t.latency_s for t in done], 0.5), "p95_s": _percentile([t.latency_s for t in done], 0.95),
        "first_frame_p50_s": _percentile(frames, 0.5), "first_frame_p95_s": _percentile(frames, 0.95),
        "frame_gap_p50_ms": _percentile(gaps, 0.5), "frame_gap_p95_ms": _percentile(gaps, 0.95),
        "frame_gap_max_ms": round(max(gaps)) if gaps else None,
        "latency_by_kind_p50_s": {k: _percentile([t.latency_s for t in done if t.kind == k], 0.5)
                                  for k in ("upload", "text", "slider", "undo", "redo")},
        "latency_growth": _growth(users),
        "throughput_turns_per_s": round(len(done) / wall_s, 3) if wall_s > 0 else None,
        "load_wall_s": round(wall_s, 1), "startup_s": round(startup_s, 1),
        "rss_start_mb": _round(rss_start), "rss_warm_mb": _round(rss_warm), "rss_peak_mb": _round(sampler.peak),
        "rss_end_mb": _round(rss_end),
        "rss_growth_mb": _round(rss_end - rss_warm if rss_end is not None and rss_warm is not None else None),
        "disk_growth_bytes": grown, "disk_growth_by_entry": dict(sorted(grown_by_entry.items())),
        "bytes_per_turn": round(grown / len(done)) if done else None,
        "bytes_per_edit": round(grown / edits) if edits else None,
        "faults": faults, "disconnects": fault_round.disconnects, "kills": fault_round.kills,
        "half_applied": len(fault_round.half_applied),
        "half_applied_examples": [_describe(h) for h in sorted(fault_round.half_applied, key=str)[:5]],
        "lost_turns": len(fault_round.lost),
        "lost_examples": [f"user {u} request {k}: {line!r}" for u, k, line in sorted(fault_round.lost)[:5]],
        "disconnects_incomplete": fault_round.disconnects_incomplete,
        "killed_turns_kept": fault_round.killed_turns_kept,
        "integrity_ok": not fault_round.integrity and not fault_round.store_errors,
        "integrity_problems": fault_round.integrity[:5], "store_errors": fault_round.store_errors[:5],
        "fault_notes": fault_round.notes[:5],
        "server_raised": sorted({m.group(0)[:200] for m in RAISED.finditer(server.log_text())})[:5],
    }


def _disk_of(pages: Pages) -> dict[str, int]:
    """Bytes under each top-level entry of the run's folders, and the database when it is PostgreSQL's."""
    sizes: dict[str, int] = _store_bytes(pages.store)
    for folder in pages.folders:
        for name, size in _disk_by_entry(folder).items():
            sizes[name] = sizes.get(name, 0) + size
    return sizes


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _describe(found: tuple) -> str:
    session, reason, *detail = found
    return f"{session[:8]}: {reason} ({', '.join(str(d) for d in detail)})"


def markdown(result: dict) -> str:
    r = result
    rows = [
        ("turns (users × turns)", f"{r['turns']} ({r['users']} × {r['turns_per_user']}), {r['edits']} edits"),
        ("errors", f"{r['errors']} ({r['server_errors_logged']} in the server's log)"),
        ("cross-session leaks", r["leaks"]),
        ("turn latency p50 / p95", f"{r['p50_s']} s / {r['p95_s']} s"),
        ("first frame p50 / p95", f"{r['first_frame_p50_s']} s / {r['first_frame_p95_s']} s"),
        ("time between preview frames p50 / p95 / max",
         f"{r['frame_gap_p50_ms']} / {r['frame_gap_p95_ms']} / {r['frame_gap_max_ms']} ms"),
        ("latency growth (last 5 / turns 2–6)", f"{r['latency_growth']}" + (
            " (the windows overlap below 11 turns)" if r["turns_per_user"] < 11 else "")),
        ("throughput", f"{r['throughput_turns_per_s']} turns/s over {r['load_wall_s']} s"),
        ("RSS start / after warm-up / peak / end", (f"{r['rss_start_mb']} / {r['rss_warm_mb']} / {r['rss_peak_mb']} / "
                                                    f"{r['rss_end_mb']} MB (growth {r['rss_growth_mb']} MB)")),
        ("disk per turn / per edit", f"{_kb(r['bytes_per_turn'])} / {_kb(r['bytes_per_edit'])} (growth by entry: "
                                     + ", ".join(f"{k} {_kb(v)}" for k, v in r["disk_growth_by_entry"].items() if v) + ")"),
        (f"half-applied turns ({r['disconnects']} disconnects + {r['kills']} kill -9)", r["half_applied"]),
        ("lost turns", r["lost_turns"]),
        ("disconnected turns never finished", r["disconnects_incomplete"]),
        ("turns killed mid-edit: kept whole / rolled back",
         f"{r['killed_turns_kept']} / {r['kills'] - r['killed_turns_kept']}"),
        (f"{'PostgreSQL' if r.get('store') == 'postgresql' else 'SQLite'} integrity",
         "ok" if r["integrity_ok"] else "; ".join(r["integrity_problems"] + r["store_errors"])),
    ]
    if r.get("pages", 1) > 1 or r.get("store") == "postgresql":
        rows.append(("saves refused as stale (undone) / turns refused as busy", f"{r['conflicts']} / {r['busy']}"))
    where = f", {r['pages']} pages on PostgreSQL" if r.get("store") == "postgresql" else ""
    if r.get("workers", "in-process") != "in-process":
        where += f", the backend on {r['workers']}"
        rows.append(("replicas' RSS at the end", f"{r['replicas_rss_mb']} MB"))
    lines = [f"## chatedit bench serve ({r['backend']} backend{where})", "", "| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    for key, title in (("error_examples", "errors"), ("leak_examples", "leaks"),
                       ("half_applied_examples", "half-applied"), ("lost_examples", "lost"), ("fault_notes", "faults"),
                       ("server_raised", "raised in the server")):
        if r.get(key):
            lines += ["", f"{title}:", *[f"- {x}" for x in r[key]]]
    return "\n".join(lines)


def _kb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f} KB"
