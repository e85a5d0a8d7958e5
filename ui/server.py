"""Starting the chat page: options, exposure (share, auth, upload limit, served paths), launch.

Gradio keeps uploads and streamed frames in ``GRADIO_TEMP_DIR``; it is set to the app's own
``<data dir>/tmp`` before the page is built, and the only other folder served is the app's
images, so no file outside the app's data and temp directories is ever served. A server first
takes its data directory's lock (a second server on it is refused, naming the first), then
empties that temp folder of what earlier processes left. Nothing here imports gradio at module
level (``chatedit --help`` stays fast). With ``--store postgresql://…`` several servers share one
database and one ``--shared-dir`` (the chat's images, the photos); each keeps a data directory of
its own (its lock, its temp files).

No response names a server path: ``HideServerPaths`` shows the data directory as an alias and
turns the alias back into it on the way in. With ``--auth``, failed logins are throttled per
user name (``LoginThrottle``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from chatedit import memory
from chatedit.limits import RateLimit

if TYPE_CHECKING:
    from chatedit.llms import LLMSettings
    from chatedit.workers.deploy import WorkerSettings

logger = logging.getLogger(__name__)

# Gradio keeps a copy of the page's settings for every page session it has seen (10,000 by default,
# each a few hundred KB: memory that only grows); ours live in the session service, so Gradio's are
# kept for this many recent page sessions only (an older tab's next request starts a fresh one)
PAGE_STATES = 256
SHARE_WITHOUT_AUTH = ("WARNING: --share makes this page public on the internet with no password. Anyone with the "
                      "link can use it. Add --auth USER:PASS (or --auth-file) to protect it.")


@dataclass
class ServeOptions:
    backend: str = "builtin"
    backend_options: dict = field(default_factory=dict)  # the backend's own, as its registry entry declares them
    llm: "str | LLMSettings" = "rules"
    data_dir: Path = Path("chatedit_data")
    host: str = "127.0.0.1"
    port: int | None = None
    share: bool = False
    auth: list[tuple[str, str]] = field(default_factory=list)
    max_upload_mb: float = 10.0
    concurrency: int = 2
    max_age_days: float = 30.0
    max_sessions: int = 1000
    new_sessions_per_minute: float = 20.0  # sessions one client address may open a minute
    mcp: bool = False  # the session's tools also served to other agents over MCP (ui/mcp.py)
    workers: "WorkerSettings | None" = None  # the backend on Ray Serve replicas (--workers ray); None: in-process
    store: str | None = None  # None: SQLite in data_dir; postgresql://…: one database for several page processes
    shared_dir: Path | None = None  # with a postgresql:// store: the folder all page processes share (default data_dir)


def parse_auth(pairs: list[str], auth_file: Path | None = None) -> list[tuple[str, str]]:
    """``USER:PASS`` strings (and lines of ``auth_file``; blank lines and ``#`` comments skipped)."""
    lines = list(pairs)
    if auth_file is not None:
        lines += [ln.strip() for ln in Path(auth_file).read_text().splitlines()
                  if ln.strip() and not ln.strip().startswith("#")]
    auth = []
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"auth must be USER:PASS, got {line!r}")
        auth.append((user, password))
    return auth


class LoginThrottle:
    """The ``USER:PASS`` pairs, with failed logins throttled per user name; ``check`` is Gradio's
    ``auth`` callable (a coroutine function: Gradio awaits it).

    Every failed login waits ``delay_s`` before it is answered (without holding up other requests:
    Gradio awaits this coroutine), and after ``failures_per_minute`` failures a name is refused
    outright, whatever the password, until its bucket refills (one try every 60/rate seconds).
    """

    def __init__(self, pairs: list[tuple[str, str]], failures_per_minute: float = 5.0, delay_s: float = 0.5):
        self.passwords = dict(pairs)
        self.failures = RateLimit(failures_per_minute)
        self.delay_s = delay_s

    async def check(self, username: str, password: str) -> bool:
        if not self.failures.exhausted(username):
            expected = self.passwords.get(username)
            if expected is not None and hmac.compare_digest(password.encode(), expected.encode()):
                return True
            self.failures.allow(username)  # spends one of the name's failures
            logger.warning("failed login for %r", username)
        await asyncio.sleep(self.delay_s)
        return False


class HideServerPaths:
    """ASGI middleware: no absolute server path leaves the server.

    Gradio names every file it serves by its absolute path (``"path"`` and ``"/file=…"`` URLs in
    its JSON and event streams). Outgoing JSON and text carry an alias in place of each hidden
    folder (``{"chatedit-data": <data dir>}``: ``chatedit-data/tmp/…/current.png``); incoming URLs
    and JSON bodies get the real folder back, so Gradio's own file routes and checks see real paths.
    """

    MAX_JSON_BYTES = 16 * 1024 * 1024  # a JSON request (a message, a slider) is far smaller
    REWRITTEN = (b"application/json", b"text/event-stream", b"text/plain", b"text/html")  # not files

    def __init__(self, app, folders: dict[str, str | Path]):
        self.app = app
        pairs = []  # (real, alias) as text, longest real first so a folder inside another wins
        for alias, folder in folders.items():
            for real in dict.fromkeys((str(Path(folder)), str(Path(folder).resolve()))):
                pairs += [(real, alias), (quote(real, safe="/"), alias), (json.dumps(real)[1:-1], alias)]
        self.out = [(r.encode(), a.encode()) for r, a in sorted(set(pairs), key=lambda p: -len(p[0]))]
        resolved = {alias: str(Path(folder).resolve()) for alias, folder in folders.items()}
        self.back_path = [(a, r) for a, r in resolved.items()]  # scope["path"] is already unquoted
        self.back_raw = [(a.encode(), quote(r, safe="/").encode()) for a, r in resolved.items()]
        self.back_body = [(a.encode(), json.dumps(r)[1:-1].encode()) for a, r in resolved.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope = dict(scope)
        for alias, real in self.back_path:  # a file URL names the alias: the real file is served
            scope["path"] = scope["path"].replace(f"={alias}/", f"={real}/")
        for alias, real in self.back_raw:
            if scope.get("raw_path"):
                scope["raw_path"] = scope["raw_path"].replace(b"=" + alias + b"/", b"=" + real + b"/")
        headers = dict(scope["headers"])
        if headers.get(b"content-type", b"").startswith(b"application/json"):
            receive = await self._body_back(scope, receive)
            if receive is None:  # too large to read: refused before the app sees it
                return await _refuse(send, 413, f"a request body is at most {self.MAX_JSON_BYTES} bytes")
        rewriting, held = False, b""

        async def send_hidden(message):
            nonlocal rewriting, held
            if message["type"] == "http.response.start":
                found = dict(message.get("headers", []))
                rewriting = found.get(b"content-type", b"").startswith(self.REWRITTEN)
                if rewriting:  # the body changes length: sent chunked
                    message = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                      if k.lower() != b"content-length"]}
            elif message["type"] == "http.response.body" and rewriting:
                body = held + message.get("body", b"")
                for real, alias in self.out:
                    body = body.replace(real, alias)
                held = b"" if not message.get("more_body") else self._partial(body)
                message = {**message, "body": body[: len(body) - len(held)]}
            await send(message)

        await self.app(scope, receive, send_hidden)

    def _partial(self, body: bytes) -> bytes:
        """The end of ``body`` that could be the start of a hidden path cut by a chunk boundary."""
        for real, _ in self.out:
            for n in range(min(len(real) - 1, len(body)), 0, -1):
                if body.endswith(real[:n]):
                    return body[-n:]
        return b""

    async def _body_back(self, scope, receive):
        """``receive`` for a JSON body with each alias turned back into its real folder; None when
        the body is over ``MAX_JSON_BYTES``."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _replay([message], receive)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.MAX_JSON_BYTES:
                return None
            more = message.get("more_body", False)
        body = b"".join(chunks)
        for alias, real in self.back_body:
            body = body.replace(b'"' + alias + b"/", b'"' + real + b"/")
        scope["headers"] = [(k, str(len(body)).encode() if k.lower() == b"content-length" else v)
                            for k, v in scope["headers"]]
        return _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


async def _refuse(send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})


def _replay(messages: list[dict], receive):
    """An ASGI ``receive`` that hands out ``messages``, then what ``receive`` gives (a disconnect)."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()
    return replayed


def prepare(options: ServeOptions):
    """Takes the data directory (a second server on it is refused, naming the first), empties its
    temp folder of what earlier processes left, loads the models once and builds the page;
    returns ``(page, app)`` ready to launch."""
    from chatedit.store import open_store

    data_dir = Path(options.data_dir).resolve()
    # first of all: DataDirInUse if another server has the data directory (a shared store is not locked)
    store = open_store(options.store, data_dir, shared_dir=options.shared_dir, max_age_days=options.max_age_days,
                       max_sessions=options.max_sessions, exclusive=True)
    try:
        store.lock.note(host=options.host, port=options.port)
        freed = clear_temp(data_dir / "tmp")
        if freed:
            logger.info("removed %.1f MB of temp files left by an earlier server", freed / 1e6)
        return _build(options, store, data_dir)
    except BaseException:
        store.close()  # lets go of the lock too
        raise


def clear_temp(folder: Path) -> int:
    """Empties ``folder`` (Gradio's temp folder: uploads, streamed frames, copies of the downloads)
    and returns the bytes freed. Only called with the data directory's lock held, so what is there
    was left by a server that is gone (stopped or killed)."""
    folder.mkdir(parents=True, exist_ok=True)
    freed = 0
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            freed += sum(f.lstat().st_size for f in child.rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(child, ignore_errors=True)
        else:
            freed += child.lstat().st_size
            child.unlink(missing_ok=True)
    return freed


def _build(options: ServeOptions, store, data_dir: Path):
    os.environ["GRADIO_TEMP_DIR"] = str(data_dir / "tmp")  # uploads and streamed frames: ours, not /tmp

    from chatedit.agent import build_agent
    from chatedit.sessions import SessionService
    from chatedit.tools import registry

    from .app import ServeConfig, build_page

    pruned = store.prune()
    if pruned:
        logger.info("pruned %d old sessions", len(pruned))
    backend_options = dict(options.backend_options)
    if registry.get(options.backend).capabilities().photos:  # photos kept to redo inversions and tunes after a restart
        backend_options.setdefault("photo_dir", store.data_dir / "photos")  # shared, with a postgresql:// store
    if options.workers is not None:  # the models live on the replicas; this process keeps sessions and the chat model
        from chatedit.workers.client import build_agent as build_agent_on_workers

        agent = build_agent_on_workers(options.backend, options.llm, settings=options.workers, **backend_options)
    else:
        agent = build_agent(options.backend, options.llm, **backend_options)
    llm_name = options.llm if isinstance(options.llm, str) else options.llm.name
    sessions = SessionService(agent, store, options.backend, max_running=options.concurrency,
                              new_sessions_per_minute=options.new_sessions_per_minute)
    page, app = build_page(sessions, ServeConfig(options.backend, llm_name, options.concurrency, options.max_upload_mb))
    if options.mcp:
        from .mcp import add_mcp_tools

        with page:  # the tools join the page as API endpoints, which Gradio's MCP server lists
            add_mcp_tools(sessions, page, app.config)
    return page, app


def launch_kwargs(options: ServeOptions, app) -> dict:
    """What ``Blocks.launch`` gets: only the app's images folder is served beside Gradio's own temp files."""
    from starlette.middleware import Middleware

    from .app import CSS

    return dict(
        server_name=options.host, server_port=options.port, share=options.share,
        auth=LoginThrottle(options.auth).check if options.auth else None,
        max_file_size=f"{int(options.max_upload_mb * 1024)}kb",
        allowed_paths=[str(app.sessions.store.images_dir)], show_error=False, quiet=False,
        state_session_capacity=PAGE_STATES, mcp_server=options.mcp,
        css=CSS, theme="default",
        app_kwargs={"middleware": [Middleware(HideServerPaths, folders=_hidden_folders(options))]},
    )


def _hidden_folders(options: ServeOptions) -> dict[str, Path]:
    """The folders whose absolute paths no response shows, by the alias shown instead."""
    folders = {"chatedit-data": Path(options.data_dir).resolve()}
    if options.shared_dir is not None and not Path(options.shared_dir).resolve().is_relative_to(folders["chatedit-data"]):
        folders["chatedit-shared"] = Path(options.shared_dir).resolve()
    temp = os.environ.get("GRADIO_TEMP_DIR")
    if temp and not Path(temp).resolve().is_relative_to(folders["chatedit-data"]):
        folders["chatedit-tmp"] = Path(temp).resolve()
    return folders


def share_warning(options: ServeOptions) -> str | None:
    return SHARE_WITHOUT_AUTH if options.share and not options.auth else None


def serve(options: ServeOptions, block: bool = True):
    warning = share_warning(options)
    if warning:
        print(warning, file=sys.stderr)
    memory.limit_arenas()  # a server's many threads would each keep memory of their own
    page, app = prepare(options)
    page.queue(default_concurrency_limit=options.concurrency, max_size=256)
    page.launch(prevent_thread_lock=not block, **launch_kwargs(options, app))
    return page, app
