"""The page's limits, over HTTP on a loopback port: failed logins are throttled, new sessions per
client are rate-limited, and no response shows the server's data directory."""

from __future__ import annotations

import asyncio
import io
import http.cookiejar
import inspect
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from types import SimpleNamespace

import pytest
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from chatedit.feedback import load_feedback  # noqa: E402
from chatedit.images import to_pil  # noqa: E402
from chatedit.limits import RateLimit  # noqa: E402
from chatedit.store import CHAT_FACE_PX  # noqa: E402
from chatedit.tools.builtin.renderer import render, sample_portraits  # noqa: E402
from chatedit.ui.server import LoginThrottle, ServeOptions, launch_kwargs, serve  # noqa: E402

USERS = [("ann", "pw-ann"), ("bo", "pw-bo")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    port = free_port()
    page, app = serve(ServeOptions(data_dir=data, port=port, auth=USERS), block=False)
    yield f"http://127.0.0.1:{port}", app, data
    page.close()


class Browser:
    """Plain HTTP with cookies: every body it reads is kept, to look for server paths in."""

    def __init__(self, url: str):
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.bodies: list[str] = []

    def read(self, path: str, data: bytes | None = None, headers: dict | None = None) -> str:
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        with self.opener.open(request, timeout=120) as response:
            body = response.read().decode()
        self.bodies.append(body)
        return body

    def login(self, user: str, password: str) -> int:
        form = urllib.parse.urlencode({"username": user, "password": password}).encode()
        try:
            self.read("/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
            return 200
        except urllib.error.HTTPError as error:
            return error.code

    def call(self, name: str, *data) -> list:
        """An endpoint's final answer (``/gradio_api/call``: post, then read its event stream)."""
        posted = self.read(f"/gradio_api/call/{name}", json.dumps({"data": list(data)}).encode(),
                           {"Content-Type": "application/json"})
        stream = self.read(f"/gradio_api/call/{name}/{json.loads(posted)['event_id']}")
        events = [line[len("data: "):] for line in stream.splitlines() if line.startswith("data: ")]
        return json.loads(events[-1])

    def upload(self, path) -> list[str]:
        boundary = "chatedit-test"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
                f"Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        return json.loads(self.read("/gradio_api/upload", body,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"}))


# --------------------------------------------------------------------------- server paths


def test_no_response_shows_the_data_directory(server, tmp_path):
    url, _, data = server
    hidden = str(data.resolve())
    browser = Browser(url)
    assert browser.login("ann", "pw-ann") == 200
    session = browser.call("start", "")[0]
    to_pil(render(sample_portraits(1, 424242))[0]).save(tmp_path / "me.png")
    uploaded = browser.upload(tmp_path / "me.png")
    answer = browser.call("send", {"text": "make them smile more", "files": [
        {"path": uploaded[0], "meta": {"_type": "gradio.FileData"}}]}, session)
    assert answer[0] == session
    browser.read("/config")
    browser.read("/gradio_api/info")
    assert all(hidden not in body and hidden.replace("/", "\\/") not in body for body in browser.bodies)
    assert any("chatedit-data/" in body for body in browser.bodies)  # the files are named, by an alias

    chat = answer[1]
    faces = [part["file"]["url"] for m in chat for part in m["content"] if part.get("type") == "file"]
    assert len(faces) >= 2 and all("=chatedit-data/" in face for face in faces)
    with browser.opener.open(faces[-1], timeout=30) as response:  # the alias serves the file
        assert Image.open(io.BytesIO(response.read())).size == (CHAT_FACE_PX, CHAT_FACE_PX)
    with pytest.raises(urllib.error.HTTPError):  # and nothing outside the app's folders
        browser.opener.open(f"{url}/gradio_api/file=chatedit-data/../../../etc/passwd", timeout=30)


def test_a_client_library_still_uploads_and_downloads_through_the_alias(server, tmp_path):
    url, _, _ = server
    client = Client(url, auth=("ann", "pw-ann"), verbose=False)
    session = client.predict("", api_name="/start")[0]
    to_pil(render(sample_portraits(1, 424242))[0]).save(tmp_path / "me.png")
    out = client.predict({"text": "", "files": [handle_file(str(tmp_path / "me.png"))]}, session, api_name="/send")
    texts = [part["text"] for m in out[1] for part in m["content"] if part.get("type") == "text"]
    assert any(t.startswith("Got it.") for t in texts), texts


# --------------------------------------------------------------------------- logins


def test_failed_logins_are_throttled_over_http(server):
    url, _, _ = server
    browser = Browser(url)
    started = time.perf_counter()
    codes = [browser.login("bo", f"guess-{i}") for i in range(8)]
    assert codes == [400] * 8
    assert time.perf_counter() - started > 8 * 0.4  # each failure waits before it is answered
    assert browser.login("bo", "pw-bo") == 400  # the name is locked for now, even with its password
    assert browser.login("ann", "pw-ann") == 200  # another name is not


def test_the_login_throttle_locks_a_name_after_its_failures_and_lets_it_back_later():
    now = [0.0]
    throttle = LoginThrottle(USERS, failures_per_minute=5, delay_s=0)
    throttle.failures.clock = lambda: now[0]

    def login(user, password):
        return asyncio.run(throttle.check(user, password))

    assert login("ann", "pw-ann")
    assert not any(login("ann", "wrong") for _ in range(5))
    assert not login("ann", "pw-ann")  # five failures in a minute: locked
    assert login("bo", "pw-bo")
    now[0] += 12.5  # one failure's worth of time later: one more try
    assert login("ann", "pw-ann")


def test_the_launch_throttles_logins_and_hides_the_data_directory(tmp_path):
    app = SimpleNamespace(sessions=SimpleNamespace(store=SimpleNamespace(images_dir=tmp_path / "images")))
    kwargs = launch_kwargs(ServeOptions(data_dir=tmp_path, auth=[("a", "b")]), app)
    throttle = kwargs["auth"].__self__
    assert isinstance(throttle, LoginThrottle) and throttle.passwords == {"a": "b"}
    assert inspect.iscoroutinefunction(kwargs["auth"])  # Gradio awaits it only when it can tell it is one
    assert launch_kwargs(ServeOptions(data_dir=tmp_path), app)["auth"] is None
    assert [m.cls.__name__ for m in kwargs["app_kwargs"]["middleware"]] == ["HideServerPaths"]


# --------------------------------------------------------------------------- new sessions


def test_a_rate_limit_refills_with_time_and_keeps_keys_apart():
    now = [0.0]
    limit = RateLimit(per_minute=3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b") and limit.exhausted("a") and not limit.exhausted("b")
    now[0] += 20  # a minute's third: one more
    assert limit.allow("a") and not limit.allow("a")


def test_a_rate_limit_forgets_quiet_keys_beyond_its_size():
    now = [0.0]
    limit = RateLimit(per_minute=1, max_keys=100, clock=lambda: now[0])
    for i in range(1000):
        now[0] += 1
        assert limit.allow(f"client-{i}")
    assert len(limit._buckets) <= 100


def test_new_sessions_per_client_are_rate_limited(tmp_path):
    import gradio as gr

    from chatedit.agent import Agent
    from chatedit.editor import Editor
    from chatedit.rules_model import RulesChatModel
    from chatedit.sessions import SessionService
    from chatedit.store import SessionStore
    from chatedit.ui.app import ServeConfig, build_page

    from fakes import OpenWorld

    sessions = SessionService(Agent(Editor(OpenWorld()), RulesChatModel()), SessionStore(tmp_path / "data"),
                              "open-world", new_sessions_per_minute=3)
    _, app = build_page(sessions, ServeConfig())

    def request(host):
        return SimpleNamespace(client=SimpleNamespace(host=host), query_params={}, username=None)

    opened = [app.start("", request("10.0.0.1"))[app.widgets.session] for _ in range(3)]
    assert len(set(opened)) == 3
    with pytest.raises(gr.Error) as refusal:
        app.start("", request("10.0.0.1"))
    assert refusal.value.message == load_feedback().say("limits.new_sessions")
    assert sorted(sessions.store.ids()) == sorted(opened)  # the refused page load stored nothing
    assert app.start(opened[0], request("10.0.0.1"))[app.widgets.session] == opened[0]  # its own come back
    with pytest.raises(gr.Error):  # nor does a message naming a session that does not exist open one
        list(app.send("hello", "f" * 32, request("10.0.0.1")))
    assert sorted(sessions.store.ids()) == sorted(opened)
    assert app.start("", request("10.0.0.2"))[app.widgets.session] not in opened  # another client is not held up


# --------------------------------------------------------------------------- long requests


def test_an_over_long_message_is_refused_and_shown_only_as_an_excerpt(server):
    url, _, _ = server
    browser = Browser(url)
    assert browser.login("ann", "pw-ann") == 200
    session = browser.call("start", "")[0]
    answer = browser.call("send", {"text": "x" * 5_000_000, "files": []}, session)
    texts = [part["text"] for m in answer[1] for part in m["content"] if part.get("type") == "text"]
    assert texts[-2] == "x" * 200 + "…" and "characters long" in texts[-1]
    assert len(browser.bodies[-1]) < 100_000  # the answer does not carry the message back
    with pytest.raises(urllib.error.HTTPError) as refused:  # a body too large to be a message is not read
        browser.read("/gradio_api/call/send", json.dumps({"data": [{"text": "x" * (17 << 20)}, session]}).encode(),
                     {"Content-Type": "application/json"})
    assert refused.value.code == 413
