"""ChatEdit's session tools over MCP (``ui/mcp.py``), driven by the official ``mcp`` client against a
real server on a loopback port (the built-in backend): a whole conversation, two sessions kept
apart, made-up sessions and bad arguments refused with a sentence, and logins under ``--auth``.

The server is the page as ``chatedit serve`` builds it (``prepare``, ``launch_kwargs``: logins,
hidden paths), with the MCP tools added inside it and ``mcp_server=True``, as ``--mcp`` does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import socket

import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("mcp")
import httpx  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from chatedit.attributes import attribute_names  # noqa: E402
from chatedit.feedback import load_feedback  # noqa: E402
from chatedit.images import to_pil  # noqa: E402
from chatedit.tools.builtin.renderer import render, sample_portraits  # noqa: E402
from chatedit.ui.mcp import LOGIN_FAILED, LOGIN_NEEDED, NO_SESSION, NOT_A_SESSION, TOOLS  # noqa: E402
from chatedit.ui.server import ServeOptions, serve  # noqa: E402

USERS = [("ann", "pw-ann"), ("bo", "pw-bo")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mcp_server(data_dir, auth=()):
    """``chatedit serve --mcp`` on a loopback port: yields (its URL, the page's app)."""
    temp = os.environ.get("GRADIO_TEMP_DIR")  # prepare points it into the data dir: put back afterwards
    options = ServeOptions(data_dir=data_dir, port=free_port(), auth=list(auth), mcp=True)
    page, app = serve(options, block=False)
    try:
        yield f"http://127.0.0.1:{options.port}", app
    finally:
        page.close()
        app.sessions.store.close()
        if temp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = temp


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mcp_server(tmp_path_factory.mktemp("data")) as running:
        yield running


@pytest.fixture(scope="module")
def server_with_logins(tmp_path_factory):
    with mcp_server(tmp_path_factory.mktemp("data-auth"), auth=USERS) as running:
        yield running


@contextlib.asynccontextmanager
async def connect(url: str, login: tuple[str, str] | None = None):
    """An MCP client session over streamable HTTP; ``login`` sent as HTTP Basic credentials."""
    auth = httpx.BasicAuth(*login) if login else None
    async with httpx.AsyncClient(auth=auth, timeout=httpx.Timeout(30, read=300)) as http:
        async with streamable_http_client(f"{url}/gradio_api/mcp/", http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def answer(result) -> tuple[list[str], Image.Image]:
    """A tool's words (its text parts, the image's URL left out) and its face."""
    assert not result.isError, result.content
    words = [c.text for c in result.content if c.type == "text" and not c.text.startswith("Image URL:")]
    faces = [c for c in result.content if c.type == "image"]
    assert len(faces) == 1 and faces[0].mimeType == "image/png", result.content
    return words, Image.open(io.BytesIO(base64.b64decode(faces[0].data))).convert("RGB")


def refusal(result) -> str:
    assert result.isError, result.content
    return " ".join(c.text for c in result.content if c.type == "text")


def said(app, session_id: str) -> list[str]:
    return [line.text for line in app.sessions.chat_log(session_id) if line.text]


def portrait_base64(seed: int) -> str:
    buffer = io.BytesIO()
    to_pil(render(sample_portraits(1, seed))[0]).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- a conversation


def test_a_whole_conversation_start_edit_smiling_undo_describe(server):
    url, app = server
    sessions = app.sessions

    async def conversation():
        async with connect(url) as mcp:
            tools = {t.name: t for t in (await mcp.list_tools()).tools}
            assert set(TOOLS) == set(tools), "the page's own handlers are not tools"
            assert tools["edit_attribute"].inputSchema["properties"]["attribute"]["enum"] == list(attribute_names())
            assert "session_id" in tools["undo"].inputSchema["required"]

            (session_id, greeting), first = answer(await mcp.call_tool("start_session", {}))
            assert len(session_id) == 32 and "Here is a new face" in greeting and first.size == (128, 128)
            before = sessions.degrees(session_id)
            target = 4 if before["smiling"] <= 2 else 0

            (reply,), smiling = answer(await mcp.call_tool(
                "edit_attribute", {"session_id": session_id, "attribute": "smiling", "degree": target}))
            after = sessions.degrees(session_id)
            assert after["smiling"] != before["smiling"] and abs(after["smiling"] - target) <= 1, (reply, after)
            assert load_feedback().attribute("smiling")["is"][after["smiling"]] in reply
            assert smiling.tobytes() != first.tobytes()

            (reply,), undone = answer(await mcp.call_tool("undo", {"session_id": session_id}))
            assert reply.startswith("Undone") and sessions.degrees(session_id) == before
            assert undone.tobytes() == first.tobytes()  # the same face as at the start

            (description,), _ = answer(await mcp.call_tool("describe", {"session_id": session_id}))
            assert description.startswith("Right now they")
            assert load_feedback().attribute("smiling")["is"][before["smiling"]] in description

            # the conversation is the session's, as the page shows it
            lines = said(app, session_id)
            assert f"[mcp] smiling → {target}" in lines and "[mcp] undo" in lines and "[mcp] describe" in lines
            assert lines[-1] == description

    asyncio.run(conversation())


def test_a_photo_and_a_message_over_mcp(server):
    url, app = server

    async def conversation():
        async with connect(url) as mcp:
            (session_id, _), _ = answer(await mcp.call_tool("start_session", {}))
            (reply,), face = answer(await mcp.call_tool(
                "upload_photo", {"session_id": session_id, "photo": "data:image/png;base64," + portrait_base64(7)}))
            assert reply.startswith("Got it.") and face.size == (128, 128)

            (refused,), still = answer(await mcp.call_tool(  # refused as the page refuses it: in words
                "upload_photo", {"session_id": session_id, "photo": base64.b64encode(b"not a picture").decode()}))
            assert "isn't an image I can open" in refused and still.tobytes() == face.tobytes()

            age = app.sessions.degrees(session_id)["age"]
            words = "make them look older" if age < 5 else "make them look younger"
            answer(await mcp.call_tool("say", {"session_id": session_id, "text": words}))
            assert app.sessions.degrees(session_id)["age"] != age

    asyncio.run(conversation())


# --------------------------------------------------------------------------- isolation and refusals


def test_two_mcp_sessions_are_isolated(server):
    url, app = server
    sessions = app.sessions

    async def two_clients():
        async with connect(url) as first, connect(url) as second:
            (a, _), face_a = answer(await first.call_tool("start_session", {}))
            (b, _), _ = answer(await second.call_tool("start_session", {}))
            assert a != b
            degrees_a, lines_a = sessions.degrees(a), said(app, a)

            age = sessions.degrees(b)["age"]
            answer(await second.call_tool("edit_attribute", {"session_id": b, "attribute": "age",
                                                             "degree": 0 if age >= 3 else 5}))
            answer(await second.call_tool("new_face", {"session_id": b}))
            assert sessions.degrees(a) == degrees_a and said(app, a) == lines_a

            (description,), still = answer(await first.call_tool("describe", {"session_id": a}))
            assert still.tobytes() == face_a.tobytes() and description.startswith("Right now they")

    asyncio.run(two_clients())


def test_made_up_sessions_and_bad_arguments_are_refused_and_change_nothing(server):
    url, app = server
    sessions = app.sessions

    async def refused():
        async with connect(url) as mcp:
            known = set(sessions.store.ids())
            said_ = refusal(await mcp.call_tool("undo", {"session_id": "../../etc/passwd"}))
            assert said_ == NOT_A_SESSION.format(session_id=repr("../../etc/passwd"))
            made_up = "0123456789abcdef" * 2
            said_ = refusal(await mcp.call_tool("edit_attribute", {"session_id": made_up, "attribute": "smiling",
                                                                  "degree": 2}))
            assert said_ == NO_SESSION.format(session_id=made_up)
            assert set(sessions.store.ids()) == known  # no session was opened in its place

            (session_id, _), _ = answer(await mcp.call_tool("start_session", {}))
            degrees, lines = sessions.degrees(session_id), said(app, session_id)
            said_ = refusal(await mcp.call_tool("edit_attribute", {"session_id": session_id, "attribute": "smiling",
                                                                  "degree": 9}))
            assert "0 (none) to 5 (most), got 9" in said_
            said_ = refusal(await mcp.call_tool("edit_attribute", {"session_id": session_id, "attribute": "hair",
                                                                  "degree": 2}))
            assert "'hair'" in said_ and "Traceback" not in said_
            assert sessions.degrees(session_id) == degrees and said(app, session_id) == lines

    asyncio.run(refused())


# --------------------------------------------------------------------------- logins


def test_with_logins_every_call_needs_the_page_login_and_a_session_is_its_logins(server_with_logins):
    url, app = server_with_logins

    async def logins():
        async with connect(url) as anonymous:
            assert refusal(await anonymous.call_tool("start_session", {})) == LOGIN_NEEDED
            assert refusal(await anonymous.call_tool("describe", {"session_id": "0" * 32})) == LOGIN_NEEDED
        async with connect(url, ("ann", "wrong")) as wrong:
            assert refusal(await wrong.call_tool("start_session", {})) == LOGIN_FAILED
        async with connect(url, ("ann", "pw-ann")) as ann, connect(url, ("bo", "pw-bo")) as bo:
            (session_id, _), _ = answer(await ann.call_tool("start_session", {}))
            assert app.sessions.store.load(session_id).owner == "ann"
            lines = said(app, session_id)
            assert refusal(await bo.call_tool("undo", {"session_id": session_id})) == \
                NO_SESSION.format(session_id=session_id)  # as if there were none: nothing says it exists
            assert said(app, session_id) == lines
            answer(await ann.call_tool("describe", {"session_id": session_id}))

    asyncio.run(logins())
