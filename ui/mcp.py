"""ChatEdit's session tools for other agents: an MCP server beside the page (``chatedit serve --mcp``).

Gradio serves the MCP endpoint (``/gradio_api/mcp/``, streamable HTTP, and SSE at ``…/sse``)
and lists every public API endpoint of the page as a tool (so the page's own handlers, which
take component payloads, are ``api_visibility="undocumented"``). ``add_mcp_tools`` adds nine
endpoints over the ``SessionService`` (``gr.api``): ``start_session``, ``upload_photo``,
``edit_attribute``, ``say``, ``undo``, ``redo``, ``reset``, ``new_face`` and ``describe``. Every
call but ``start_session`` names the session it acts on; each runs as a turn in that session's
queue, like a message or a control on the page, and returns the assistant's words and the face
(MCP image content).

The same checks as the page: a photo goes through ``chatedit.intake``, a message through the
agent's own limits, new sessions are rate-limited per client address (by the session service), and with logins a
session opens only for the login that created it. A refusal is a ``ToolError``: one sentence,
an MCP tool error, the session as it was.

Logins: Gradio's MCP route does not ask for the page's login, and a tool called over it gets the
raw Starlette request (no ``username``). So with ``--auth`` each call must carry the same
``USER:PASS`` as HTTP Basic credentials (``Authorization: Basic …``); they are checked by the
page's own login check (``LoginThrottle``: failures throttled per name, one budget for page and
MCP). A call through Gradio's ordinary HTTP API already has a page login (``request.username``).

The tools run outside Gradio's queue (``queue=False``): a queued MCP call reaches the endpoint
through a loopback HTTP client that cannot log in, and the session service already bounds how
many turns run at once.

No ``from __future__ import annotations`` here: ``gr.api`` reads the tools' schemas from their
annotations, which must be real objects (the attribute names are a ``Literal`` built at runtime).
"""

import base64
import binascii
import hmac
import inspect
import logging
import os
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

import gradio as gr
from anyio import CapacityLimiter, to_thread
from gradio.data_classes import FileData

from chatedit.attributes import MAX_DEGREE, load_attributes
from chatedit.sessions import Notice, Said, SessionService, TooManySessions
from chatedit.store import valid_session_id

from .app import BUTTONS, LISTENERS, ServeConfig

logger = logging.getLogger(__name__)

TOOLS = ("start_session", "upload_photo", "edit_attribute", "say", "undo", "redo", "reset", "new_face", "describe")
API_PREFIX = "mcp_"  # the tools' names in Gradio's HTTP API (the page's buttons already have "undo", …)
NO_SESSION = ("There is no session {session_id} for you. Call start_session for a new one and pass the "
              "session_id it returns to every other tool.")
NOT_A_SESSION = ("{session_id} is not a session id: a session id is 32 hexadecimal characters, as "
                 "start_session returns it.")
BAD_ATTRIBUTE = "There is no attribute {attribute!r}; the attributes are {names}."
BAD_DEGREE = "The degree must be a whole number from 0 (none) to {top} (most), got {degree!r}."
LOGIN_NEEDED = ("This server has logins: send the same user name and password as the page, as HTTP Basic "
                "credentials (an Authorization: Basic header) with every MCP request.")
LOGIN_FAILED = "That user name and password were not accepted."
NOT_BASE64 = "The photo must be a PNG, JPEG or WebP file as base64 (or a data: URL); this could not be read as base64."
TOO_BIG = "That photo is {mb:.1f} MB; the largest this server takes is {limit:g} MB."


class ToolError(gr.Error):
    """A refusal the calling agent reads as one plain sentence (an MCP tool error); nothing changed.

    ``gr.Error`` turns into text quoted (its ``__str__`` is ``repr``), and the MCP server sends
    ``str(error)``; this one sends the sentence as it is."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)

    def __str__(self) -> str:
        return self.message


class McpTools:
    """What the MCP tools do, over ``sessions``; ``page`` is read for its logins (``page.auth``,
    set when it is launched)."""

    def __init__(self, sessions: SessionService, page: gr.Blocks, config: ServeConfig):
        self.sessions = sessions
        self.page = page
        self.config = config
        self.names = tuple(a.name for a in load_attributes())
        self.threads = CapacityLimiter(LISTENERS)  # calls waiting for their turns, as the page's handlers

    # ----------------------------------------------------------------- the tools

    async def start(self, request: gr.Request) -> tuple[str, str, dict]:
        request = _gradio_request(request)
        user = await self._login(request)
        client = request.client.host if request.client is not None else "local"
        try:
            session_id = await self._thread(self.sessions.ensure, None, user, client)
        except TooManySessions as refused:
            raise ToolError(str(refused)) from None
        view = await self._thread(self.sessions.view, session_id)
        opening = " ".join(line.text for line in view.chat if line.role == "assistant" and line.text)
        return session_id, opening, _file(view.image)

    async def act(self, session_id: str, name: str, args: dict, said: str,
                  request: gr.Request) -> tuple[str, dict]:
        """A tool of the agent's, run as a turn of the session (as a slider or a button does)."""
        session_id = await self._session(session_id, request)
        return await self._thread(self._answer, session_id, partial(self.sessions.act, session_id, name, args, said))

    async def edit(self, session_id: str, attribute: str, degree: int, request: gr.Request) -> tuple[str, dict]:
        session_id = await self._session(session_id, request)
        if attribute not in self.names:  # the MCP server checks the schema; Gradio's HTTP API does not
            raise ToolError(BAD_ATTRIBUTE.format(attribute=attribute, names=", ".join(self.names)))
        if isinstance(degree, bool) or not isinstance(degree, int) or not 0 <= degree <= MAX_DEGREE:
            raise ToolError(BAD_DEGREE.format(top=MAX_DEGREE, degree=degree))
        args, said = {"attribute": attribute, "target": degree}, f"[mcp] {attribute} → {degree}"
        return await self._thread(self._answer, session_id,
                                  partial(self.sessions.act, session_id, "edit_attribute", args, said))

    async def say(self, session_id: str, text: str, request: gr.Request) -> tuple[str, dict]:
        session_id = await self._session(session_id, request)
        return await self._thread(self._answer, session_id, partial(self.sessions.chat, session_id, text))

    async def upload(self, session_id: str, photo: str, request: gr.Request) -> tuple[str, dict]:
        session_id = await self._session(session_id, request)
        return await self._thread(self._upload, session_id, self._decode(photo))

    # ----------------------------------------------------------------- checks

    async def _session(self, session_id: str, request: gr.Request) -> str:
        """The named session, opened for this caller; ``ToolError`` if it is not one of theirs."""
        user = await self._login(_gradio_request(request))
        return await self._thread(self._open, session_id, user)

    def _open(self, session_id: str, user: str | None) -> str:
        if not valid_session_id(session_id):
            raise ToolError(NOT_A_SESSION.format(session_id=repr(str(session_id)[:80])))
        saved = self.sessions.store.load(session_id)  # every session is written when it is created
        if saved is None or (user is not None and saved.owner != user):  # another login's: as if none
            raise ToolError(NO_SESSION.format(session_id=session_id))
        if self.sessions.ensure(session_id, user) != session_id:  # gone since (pruned): never act on another
            raise ToolError(NO_SESSION.format(session_id=session_id))
        return session_id

    async def _login(self, request: gr.Request) -> str | None:
        """The caller's login: None without logins; a page login (Gradio's HTTP API); else the
        HTTP Basic credentials of the MCP request, checked as the page checks a login."""
        auth = self.page.auth  # what launch() got: (user, password) pairs or a check, possibly async
        if not auth:
            return None
        if request.username:
            return request.username
        user, password = _basic_credentials(request.headers.get("authorization"))
        if user is None:
            raise ToolError(LOGIN_NEEDED)
        if callable(auth):
            accepted = auth(user, password)
            accepted = await accepted if inspect.isawaitable(accepted) else accepted
        else:
            expected = dict(auth).get(user)
            accepted = expected is not None and hmac.compare_digest(password.encode(), expected.encode())
        if not accepted:
            raise ToolError(LOGIN_FAILED)
        return user

    def _decode(self, photo: str) -> bytes:
        """A photo sent as base64 (or a ``data:`` URL), refused from its length when too large."""
        encoded = photo.partition(",")[2] if photo.startswith("data:") else photo
        limit = self.config.max_upload_mb
        if len(encoded) * 3 / 4 > limit * 1024 * 1024:
            raise ToolError(TOO_BIG.format(mb=len(encoded) * 3 / 4 / 1024 / 1024, limit=limit))
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ToolError(NOT_BASE64) from None

    # ----------------------------------------------------------------- turns (in a worker thread)

    async def _thread(self, fn, *args):
        """``fn(*args)`` in a worker thread: the store, the turns and the views block."""
        return await to_thread.run_sync(fn, *args, limiter=self.threads)

    def _answer(self, session_id: str, submit) -> tuple[str, dict]:
        """Queues the turn (``submit()``), waits for its end; the assistant's words and the face."""
        return "\n".join(_assistant_words(submit())), _file(self.sessions.view(session_id).image)

    def _upload(self, session_id: str, data: bytes) -> tuple[str, dict]:
        """The photo as a file in a folder of its own (the session's intake reads files), for its turn."""
        temp = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())  # the server's: its data dir's tmp
        temp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=temp, prefix="mcp-") as folder:
            path = Path(folder) / "photo"
            path.write_bytes(data)
            return self._answer(session_id, partial(self.sessions.upload, session_id, path))


def add_mcp_tools(sessions: SessionService, page: gr.Blocks, config: ServeConfig = ServeConfig()) -> McpTools:
    """Adds the session tools to ``page`` as API endpoints, which Gradio's MCP server lists as tools
    (``launch(mcp_server=True)``). Call it inside ``with page:``, before ``launch``."""
    tools = McpTools(sessions, page, config)
    Attribute = Literal[tools.names]  # a type: the schema lists the names
    FaceReply = tuple[str, FileData | None]

    async def start_session(request: gr.Request) -> tuple[str, str, FileData | None]:
        """Start a new face-editing session with a generated face. Call this first.

        Returns:
            the session_id to pass to every other tool, the assistant's greeting, and the face (none on a
            backend that edits photos: it asks for one; upload_photo, or new_face for a generated one).
        """
        return await tools.start(request)

    async def upload_photo(session_id: str, photo: str, request: gr.Request) -> FaceReply:
        """Replace the session's face with the face in a photo (a portrait; the face is found and aligned).

        Args:
            session_id: the id start_session returned.
            photo: the photo file (PNG, JPEG or WebP) as base64, or as a data: URL (data:image/png;base64,...).
        Returns:
            the assistant's reply (or why the photo was refused), and the face now.
        """
        return await tools.upload(session_id, photo, request)

    async def edit_attribute(session_id: str, attribute: Attribute, degree: int, request: gr.Request) -> FaceReply:
        """Set one attribute of the face to an exact degree; the other attributes are kept as far as possible.

        Args:
            session_id: the id start_session returned.
            attribute: which attribute to change.
            degree: 0 (none) to 5 (most), e.g. smiling 0 is a serious expression, 3 a broad smile, 5 laughing.
        Returns:
            the assistant's reply (which degree was reached, and what else changed), and the face now.
        """
        return await tools.edit(session_id, attribute, degree, request)

    async def say(session_id: str, text: str, request: gr.Request) -> FaceReply:
        """Send a message in plain words, as a person would type it ("a bit more smile", "add thin glasses").

        Args:
            session_id: the id start_session returned.
            text: the message.
        Returns:
            the assistant's reply, and the face now.
        """
        return await tools.say(session_id, text, request)

    async def undo(session_id: str, request: gr.Request) -> FaceReply:
        """Undo the last change to the face.

        Args:
            session_id: the id start_session returned.
        Returns:
            the assistant's reply (what is different again), and the face now.
        """
        return await tools.act(session_id, "undo", BUTTONS["undo"], "[mcp] undo", request)

    async def redo(session_id: str, request: gr.Request) -> FaceReply:
        """Redo the last change that was undone.

        Args:
            session_id: the id start_session returned.
        Returns:
            the assistant's reply, and the face now.
        """
        return await tools.act(session_id, "redo", BUTTONS["redo"], "[mcp] redo", request)

    async def reset(session_id: str, request: gr.Request) -> FaceReply:
        """Go back to the face as it was at the start of the session (or as the photo uploaded last).

        Args:
            session_id: the id start_session returned.
        Returns:
            the assistant's reply, and the face now.
        """
        return await tools.act(session_id, "reset", BUTTONS["reset"], "[mcp] reset", request)

    async def new_face(session_id: str, request: gr.Request) -> FaceReply:
        """Start again in the same session with a new generated face.

        Args:
            session_id: the id start_session returned.
        Returns:
            the assistant's reply (describing the new face), and the face.
        """
        return await tools.act(session_id, "new_face", BUTTONS["new_face"], "[mcp] new face", request)

    async def describe(session_id: str, request: gr.Request) -> FaceReply:
        """Describe the face as it is now, attribute by attribute, in words.

        Args:
            session_id: the id start_session returned.
        Returns:
            the description, and the face now.
        """
        return await tools.act(session_id, "describe", {}, "[mcp] describe", request)

    for fn in (start_session, upload_photo, edit_attribute, say, undo, redo, reset, new_face, describe):
        gr.api(fn, api_name=API_PREFIX + fn.__name__, queue=False)
    return tools


def _assistant_words(events: Iterator) -> Iterator[str]:
    """The assistant's lines and the notices of a turn, as it runs to its end."""
    for event in events:
        if isinstance(event, Said) and event.line.role == "assistant" and event.line.text:
            yield event.line.text
        elif isinstance(event, Notice):
            yield event.text


def _file(path: Path | None) -> dict | None:
    """A face's PNG as Gradio's file payload (``FileData``, as the JSON Gradio sends: ``gr.api``
    endpoints skip postprocessing), which its MCP server sends as image content; None while the
    session has no face (a photo backend's new session, before a photo)."""
    return None if path is None else FileData(path=str(path), mime_type="image/png").model_dump()


def _gradio_request(request) -> gr.Request:
    """Over MCP a tool gets the Starlette request itself; over Gradio's HTTP API, a ``gr.Request``."""
    return request if isinstance(request, gr.Request) else gr.Request(request)


def _basic_credentials(header: str | None) -> tuple[str | None, str]:
    """``(user, password)`` from an ``Authorization: Basic …`` header; ``(None, "")`` without one."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None, ""
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return None, ""
    return (user, password) if sep and user else (None, "")


__all__ = ["TOOLS", "McpTools", "ToolError", "add_mcp_tools"]
