"""The chat page driven like a user, over HTTP with gradio_client: a real server on a loopback port."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from chatedit.images import to_pil  # noqa: E402
from chatedit.tools.builtin.renderer import render, sample_portraits  # noqa: E402
from chatedit.ui.images import DISPLAY_PX  # noqa: E402
from chatedit.ui.server import ServeOptions, parse_auth, serve, share_warning  # noqa: E402



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def texts(chat) -> list[str]:
    return [part["text"] for m in chat for part in m["content"] if part.get("type") == "text"]


def images(chat) -> list[str]:
    return [part["file"] for m in chat for part in m["content"] if part.get("type") == "file"]


def unwrap(value):
    """A component's value from an answer that also changes its props (the preview's alt text)."""
    return value.get("value") if isinstance(value, dict) and value.get("__type__") == "update" else value


def inline(value) -> bool:
    """Whether ``value`` is a picture sent inside the response (the live preview, before/after)."""
    value = unwrap(value)
    return isinstance(value, dict) and str(value.get("url") or "").startswith("data:image/")


def frame(update) -> Image.Image | None:
    """The picture of a frame of an edit in flight, sent to the live preview (else None)."""
    from chatedit.ui.images import Frame

    value = update.get("value") if isinstance(update, dict) else None
    return value.image if isinstance(value, Frame) else None


def pixels(picture) -> torch.Tensor:
    """A picture's pixels: a file the client downloaded, or one sent inline."""
    picture = unwrap(picture)
    if inline(picture):
        picture = io.BytesIO(base64.b64decode(picture["url"].split(",", 1)[1]))
    return torch.from_numpy(__import__("numpy").asarray(Image.open(picture).convert("RGB")).copy())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    port = free_port()
    page, app = serve(ServeOptions(data_dir=data, port=port, concurrency=2), block=False)
    yield f"http://127.0.0.1:{port}/", app
    page.close()


class Tab:
    """A browser tab over HTTP; every answer is keyed by the page's components (``Widgets``), as the
    handlers return it, whatever order the endpoint lists them in."""

    def __init__(self, url: str, widgets):
        self.client = Client(url, verbose=False)
        self.widgets = widgets

    def keyed(self, out) -> dict:
        return dict(zip(self.widgets.outputs, out))

    def start(self, session: str = "") -> dict:
        return self.keyed(self.client.predict(session, api_name="/start"))

    def send(self, session: str, text: str = "", files: list | None = None) -> tuple[list[dict], dict]:
        """Sends a message; returns (every streamed answer, the final one)."""
        job = self.submit(session, text, files)
        job.result()
        outputs = [self.keyed(out) for out in job.outputs()]
        return outputs, outputs[-1]

    def submit(self, session: str, text: str = "", files: list | None = None):
        return self.client.submit({"text": text, "files": files or []}, session, api_name="/send")

    def press(self, button: str, session: str) -> dict:
        return self.keyed(self.client.predict(session, api_name=f"/{button}"))

    def slide(self, attribute: str, value: int, session: str) -> dict:
        return self.keyed(self.client.predict(value, session, api_name=f"/slider_{attribute}"))

    def edit_path_gif(self, session: str) -> str:
        out = self.client.predict(session, api_name="/edit_path_gif")
        return out if isinstance(out, str) else out["value"]

    def degrees(self, out: dict) -> dict[str, int]:
        return {name: int(out[slider]) for name, slider in self.widgets.sliders.items()}


def tab(server) -> Tab:
    url, app = server
    return Tab(url, app.widgets)


def test_a_message_streams_frames_then_shows_the_edited_face_in_the_chat(server):
    c = tab(server)
    w = c.widgets
    first = c.start()
    session = first[w.session]
    assert len(session) == 32 and images(first[w.chatbot]) and "Here is a new face" in texts(first[w.chatbot])[0]
    before = c.degrees(first)
    ask = "make the person look older" if before["age"] < 5 else "make the person look younger"

    streamed, last = c.send(session, ask)
    previews = [o[w.preview] for o in streamed[:-1] if inline(o[w.preview])]  # unchanged ones are updates
    assert all(pixels(p).shape == (DISPLAY_PX, DISPLAY_PX, 3) for p in previews), "drawn at display size"
    assert len(previews) >= 2, "the walk's frames should stream into the preview before the turn ends"
    assert len({pixels(p).float().mean().item() for p in previews}) >= 2, "streamed frames should differ"
    after = c.degrees(last)
    assert after["age"] != before["age"]
    chat = last[w.chatbot]
    assert texts(chat)[-2] == ask
    assert len(images(chat)) == len(images(first[w.chatbot])) + 1  # the edited face, in the conversation
    # the download is the face shown (the chat's copy is a WebP drawn at 256 px, within a few levels of it)
    chat_face = pixels(images(chat)[-1]).permute(2, 0, 1)[None].float()
    shrunk = torch.nn.functional.interpolate(chat_face, size=(128, 128), mode="area")[0].permute(1, 2, 0)
    assert (shrunk - pixels(last[w.png]).float()).abs().mean() < 4
    before_img, after_img = last[w.before_after]
    assert not torch.equal(pixels(before_img), pixels(after_img))
    assert not isinstance(last[w.gif], str)  # no edit-path GIF drawn at the end of a turn
    assert Image.open(c.edit_path_gif(session)).n_frames > 2  # drawn when asked for
    assert "looks like the same person" in last[w.status] and "(1 = identical)" in last[w.status]

    undone = c.press("undo", session)
    assert c.degrees(undone) == before
    assert texts(undone[w.chatbot])[-2] == "[undo]"


def test_handlers_answer_with_the_components_they_change(server):
    _, app = server
    w = app.widgets
    session = app.sessions.ensure(None)
    full = app.start(session)
    assert set(full) == set(w.outputs) and full[w.session] == session
    # a new session's face is random: ask for glasses it does not wear yet, so the edit walks
    ask = "add thin glasses" if app.sessions.degrees(session)["eyeglasses"] != 2 else "add thick sunglasses"
    emptied, *streamed = list(app.send({"text": ask, "files": []}, session))
    # the words show at once with a working line; the page empties the box of text itself (a
    # server answer emptying it could wipe what is typed next)
    assert set(emptied) == {w.chatbot} and emptied[w.chatbot][-2] == {"role": "user", "content": ask}
    assert emptied[w.chatbot][-1]["metadata"] == {"title": f"Working on: {ask}…", "status": "pending"}
    *during, last = streamed
    assert during and all(set(out) <= {w.preview, w.chatbot} for out in during)  # frames and the chat as it grows
    assert set(during[0]) == {w.chatbot} and during[0][w.chatbot][-2] == {"role": "user", "content": ask}
    assert any(frame(out.get(w.preview)) is not None for out in during)
    working = [out[w.chatbot][-1]["content"] for out in during if w.chatbot in out and frame(out.get(w.preview))]
    assert any("eyeglasses now" in line and "so far" in line for line in working)  # the edit and how far it is
    assert "metadata" not in last[w.chatbot][-1]  # the turn is over: no working line
    assert set(last) == set(w.outputs) and last[w.sliders["eyeglasses"]] == app.sessions.degrees(session)["eyeglasses"]
    same = app.sessions.degrees(session)["smiling"]
    unmoved = list(app.slider("smiling", same, session))  # a slider let go where it was: nothing to do
    assert len(unmoved) == 1 and set(unmoved[0]) == set(w.outputs)
    assert len(unmoved[0][w.chatbot]) == len(last[w.chatbot])


def test_a_tab_closed_mid_edit_finds_the_whole_turn_when_it_comes_back(server):
    _, app = server
    w = app.widgets
    session = app.sessions.ensure(None)
    degrees = app.sessions.degrees(session)
    ask = "make the person look older" if degrees["age"] < 4 else "make the person look younger"
    outputs = app.send({"text": ask, "files": []}, session)
    next(out for out in outputs if frame(out.get(w.preview)) is not None)  # an edit's frame is on screen
    outputs.close()  # the tab is closed
    assert app.sessions.idle(session, timeout=60)
    back = app.start(session)
    state = app.sessions.agent.session(session).state
    assert state.turns[-1].user == ask and back[w.chatbot][-1]["content"] == state.turns[-1].reply
    assert {name: back[slider] for name, slider in w.sliders.items()} == state.turns[-1].degrees != degrees


def test_with_logins_another_users_session_id_opens_nothing_of_it(server):
    from types import SimpleNamespace

    _, app = server
    w = app.widgets
    ann = SimpleNamespace(username="ann", query_params={}, client=SimpleNamespace(host="127.0.0.1"))
    bo = SimpleNamespace(username="bo", query_params={}, client=SimpleNamespace(host="127.0.0.1"))
    hers = app.start("", request=ann)
    session = hers[w.session]
    list(app.send({"text": "add thin glasses", "files": []}, session, request=ann))
    his = app.start(session, request=bo)
    assert his[w.session] != session and "belongs to another login" in his[w.chatbot][0]["content"]
    assert "add thin glasses" not in str(his[w.chatbot])
    list(app.button("undo", session, request=bo))  # his undo, on a session of his own
    assert app.sessions.agent.session(session).state.turns[-1].user == "add thin glasses"
    assert app.start(session, request=ann)[w.session] == session


def test_two_clients_keep_separate_sessions(server):
    a, b = tab(server), tab(server)
    w = a.widgets
    sa, sb = a.start()[w.session], b.start()[w.session]
    assert sa != sb
    b_before = b.degrees(b.start(sb))
    a_before = a.degrees(a.start(sa))
    ask = "add thick glasses" if a_before["eyeglasses"] < 3 else "remove the glasses"
    _, a_after = a.send(sa, ask)
    assert a.degrees(a_after)["eyeglasses"] != a_before["eyeglasses"]
    b_now = b.start(sb)
    assert b.degrees(b_now) == b_before
    assert ask not in texts(b_now[w.chatbot])


def test_sliders_and_buttons_go_through_the_agent_and_appear_in_the_chat(server):
    _, app = server
    c = tab(server)
    w = c.widgets
    session = c.start()[w.session]
    now = c.degrees(c.start(session))
    target = 0 if now["bangs"] >= 3 else 4
    out = c.slide("bangs", target, session)
    assert texts(out[w.chatbot])[-2] == f"[slider] Bangs → {target}"
    assert abs(c.degrees(out)["bangs"] - target) < abs(now["bangs"] - target)
    state = app.sessions.agent.session(session).state
    assert state.turns[-1].calls[0]["name"] == "edit_attribute"  # the agent's own tool ran it
    out = c.press("new_face", session)
    assert texts(out[w.chatbot])[-1].startswith("Here is a new face")
    out = c.press("undo", session)
    assert c.degrees(out)["bangs"] == state.current.degrees["bangs"]


def test_uploads_a_portrait_and_refuses_what_is_not_one(server, tmp_path):
    c = tab(server)
    w = c.widgets
    session = c.start()[w.session]
    shown = c.start(session)
    portrait = render(sample_portraits(1, 424242))[0]
    to_pil(portrait).resize((300, 300)).save(tmp_path / "me.png")
    (tmp_path / "notes.png").write_text("not an image at all")
    Image.fromarray((torch.rand(128, 128, 3) * 255).byte().numpy()).save(tmp_path / "noise.png")

    _, bad = c.send(session, files=[handle_file(str(tmp_path / "notes.png"))])
    assert "isn't an image" in texts(bad[w.chatbot])[-1]
    assert c.degrees(bad) == c.degrees(shown) and torch.equal(pixels(bad[w.png]), pixels(shown[w.png]))
    _, noise = c.send(session, files=[handle_file(str(tmp_path / "noise.png"))])
    # refused as no face, or (the built-in backend) as not one of its own portraits
    assert any(why in texts(noise[w.chatbot])[-1] for why in ("couldn't find a face", "draws its own portraits"))
    assert torch.equal(pixels(noise[w.png]), pixels(shown[w.png]))

    streamed, good = c.send(session, "describe", files=[handle_file(str(tmp_path / "me.png"))])
    assert texts(good[w.chatbot])[-3].startswith("Got it.")
    previews = [o[w.preview] for o in streamed[:-1] if inline(o[w.preview])]  # describe draws no frames
    assert len(previews) >= 2, "the inversion's reconstructions should stream into the preview"
    assert not torch.equal(pixels(good[w.png]), pixels(shown[w.png]))
    error = (pixels(good[w.png]).float() / 255 - portrait.permute(1, 2, 0)).pow(2).mean()
    assert -10 * torch.log10(error) > 22  # the uploaded face, redrawn by the backend


def test_no_file_outside_the_app_directories_is_served(server):
    url, _ = server
    for path in ("/etc/passwd", str(Path(__file__).resolve()), str(Path.cwd() / "pyproject.toml")):
        try:
            with urllib.request.urlopen(f"{url}gradio_api/file={path}") as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        assert status in (403, 404), path


def test_auth_and_share_options():
    assert parse_auth(["ann:pw1", "bo:p:w"]) == [("ann", "pw1"), ("bo", "p:w")]
    with pytest.raises(ValueError, match="USER:PASS"):
        parse_auth(["nopassword"])
    assert "no password" in share_warning(ServeOptions(share=True))
    assert share_warning(ServeOptions(share=True, auth=[("a", "b")])) is None
    assert share_warning(ServeOptions()) is None


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.mark.slow
def test_killing_and_restarting_the_server_restores_the_conversation_and_face(server, tmp_path):
    widgets = server[1].widgets  # the same page's components, to read the other server's answers by
    w = widgets
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "chatedit.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_up(url, proc)
        c = Tab(url, widgets)
        session = c.start()[w.session]
        _, before = c.send(session, "add thin glasses")
        face = pixels(before[w.png])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_up(url, proc)
        c = Tab(url, widgets)
        after = c.start(session)
        assert after[w.session] == session
        assert texts(after[w.chatbot]) == texts(before[w.chatbot])
        assert len(images(after[w.chatbot])) == len(images(before[w.chatbot]))
        assert c.degrees(after) == c.degrees(before)
        assert torch.equal(pixels(after[w.png]), face)
        undone = c.press("undo", session)  # the history came back too, not only the picture
        assert undone[w.status].count("undo") and texts(undone[w.chatbot])[-2] == "[undo]"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_idle_sessions_leave_memory_and_come_back_from_the_store(server, monkeypatch):
    _, app = server
    monkeypatch.setattr(app.sessions, "max_open", 2)
    c = tab(server)
    w = c.widgets
    first = c.start()
    others = [c.start()[w.session] for _ in range(3)]
    assert first[w.session] not in app.sessions.agent.sessions and len(app.sessions.agent.sessions) <= 3
    again = c.start(first[w.session])
    assert again[w.session] == first[w.session] and texts(again[w.chatbot]) == texts(first[w.chatbot])
    assert all(s in app.sessions.store.ids() for s in others)


def test_a_long_edit_does_not_hold_up_another_sessions_page(server, monkeypatch):
    import chatedit.editor

    real_edit = chatedit.editor.edit

    def slow_edit(*args, **kwargs):
        time.sleep(3.0)
        return real_edit(*args, **kwargs)

    monkeypatch.setattr(chatedit.editor, "edit", slow_edit)
    busy = [tab(server) for _ in range(2)]  # as many edits as the queue runs at once (concurrency=2)
    w = busy[0].widgets
    jobs = [c.submit(c.start()[w.session], "make them look older") for c in busy]
    time.sleep(0.5)  # both edits are walking now
    began = time.perf_counter()
    other = tab(server).start()
    waited = time.perf_counter() - began
    assert len(other[w.session]) == 32 and waited < 2.5 and not any(job.done() for job in jobs)
    for job in jobs:
        job.result()


def test_the_launch_limits_uploads_and_serves_only_the_app_folders(tmp_path):
    from types import SimpleNamespace

    from chatedit.ui.server import launch_kwargs

    app = SimpleNamespace(sessions=SimpleNamespace(store=SimpleNamespace(images_dir=tmp_path / "images")))
    kwargs = launch_kwargs(ServeOptions(max_upload_mb=2, auth=[("a", "b")]), app)
    assert kwargs["max_file_size"] == "2048kb" and kwargs["allowed_paths"] == [str(tmp_path / "images")]
    assert kwargs["auth"].__self__.passwords == {"a": "b"} and kwargs["server_name"] == "127.0.0.1"  # throttled
