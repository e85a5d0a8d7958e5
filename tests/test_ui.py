"""The chat page driven like a user, over HTTP with gradio_client: a real server on a loopback port."""

from __future__ import annotations

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
from chatedit.ui.server import ServeOptions, parse_auth, serve, share_warning  # noqa: E402

ATTRS = ("bangs", "eyeglasses", "beard", "smiling", "age")
# outputs of every endpoint: session, chat, preview, five sliders, before/after, png, gif, status
SESSION, CHAT, PREVIEW, SLIDERS, BEFORE_AFTER, PNG, GIF, STATUS = 0, 1, 2, slice(3, 8), 8, 9, 10, 11


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def degrees(out) -> dict[str, int]:
    return dict(zip(ATTRS, (int(v) for v in out[SLIDERS])))


def texts(chat) -> list[str]:
    return [part["text"] for m in chat for part in m["content"] if part.get("type") == "text"]


def images(chat) -> list[str]:
    return [part["file"] for m in chat for part in m["content"] if part.get("type") == "file"]


def pixels(path) -> torch.Tensor:
    return torch.from_numpy(__import__("numpy").asarray(Image.open(path).convert("RGB")).copy())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    port = free_port()
    page, app = serve(ServeOptions(data_dir=data, port=port, concurrency=2), block=False)
    yield f"http://127.0.0.1:{port}/", app
    page.close()


def client(url: str) -> Client:
    return Client(url, verbose=False)


def start(c: Client, session: str = ""):
    return c.predict(session, api_name="/start")


def send(c: Client, session: str, text: str = "", files: list | None = None):
    """Sends a message; returns (every streamed output, the final one)."""
    job = c.submit({"text": text, "files": files or []}, session, api_name="/send")
    job.result()
    outputs = job.outputs()
    return outputs, outputs[-1]


def test_a_message_streams_frames_then_shows_the_edited_face_in_the_chat(server):
    url, _ = server
    c = client(url)
    first = start(c)
    session = first[SESSION]
    assert len(session) == 32 and images(first[CHAT]) and "Here is a new face" in texts(first[CHAT])[0]
    before = degrees(first)
    ask = "make the person look older" if before["age"] < 5 else "make the person look younger"

    streamed, last = send(c, session, ask)
    previews = [o[PREVIEW] for o in streamed[:-1] if isinstance(o[PREVIEW], str)]  # skipped outputs are dicts
    assert len(previews) >= 2, "the walk's frames should stream into the preview before the turn ends"
    assert len({pixels(p).float().mean().item() for p in previews}) >= 2, "streamed frames should differ"
    after = degrees(last)
    assert after["age"] != before["age"]
    chat = last[CHAT]
    assert texts(chat)[-2] == ask
    assert len(images(chat)) == len(images(first[CHAT])) + 1  # the edited face, in the conversation
    assert torch.equal(pixels(images(chat)[-1]), pixels(last[PNG]))  # the download is the face shown
    before_img, after_img = last[BEFORE_AFTER]
    assert not torch.equal(pixels(before_img), pixels(after_img))
    assert Image.open(last[GIF]).n_frames > 2
    assert "identity kept" in last[STATUS]

    undone = c.predict(session, api_name="/undo")
    assert degrees(undone) == before
    assert texts(undone[CHAT])[-2] == "[undo]"


def test_two_clients_keep_separate_sessions(server):
    url, _ = server
    a, b = client(url), client(url)
    sa, sb = start(a)[SESSION], start(b)[SESSION]
    assert sa != sb
    b_before = degrees(start(b, sb))
    a_before = degrees(start(a, sa))
    ask = "add thick glasses" if a_before["eyeglasses"] < 3 else "remove the glasses"
    _, a_after = send(a, sa, ask)
    assert degrees(a_after)["eyeglasses"] != a_before["eyeglasses"]
    b_now = start(b, sb)
    assert degrees(b_now) == b_before
    assert ask not in texts(b_now[CHAT])


def test_sliders_and_buttons_go_through_the_agent_and_appear_in_the_chat(server):
    url, app = server
    c = client(url)
    session = start(c)[SESSION]
    now = degrees(start(c, session))
    target = 0 if now["bangs"] >= 3 else 4
    out = c.predict(target, session, api_name="/slider_bangs")
    assert texts(out[CHAT])[-2] == f"[slider] Bangs → {target}"
    assert abs(degrees(out)["bangs"] - target) < abs(now["bangs"] - target)
    state = app.agent.session(session).state
    assert state.turns[-1].calls[0]["name"] == "edit_attribute"  # the agent's own tool ran it
    out = c.predict(session, api_name="/new_face")
    assert texts(out[CHAT])[-1].startswith("Here is a new face")
    out = c.predict(session, api_name="/undo")
    assert degrees(out)["bangs"] == state.current.degrees["bangs"]


def test_uploads_a_portrait_and_refuses_what_is_not_one(server, tmp_path):
    url, _ = server
    c = client(url)
    session = start(c)[SESSION]
    shown = start(c, session)
    portrait = render(sample_portraits(1, 424242))[0]
    to_pil(portrait).resize((300, 300)).save(tmp_path / "me.png")
    (tmp_path / "notes.png").write_text("not an image at all")
    Image.fromarray((torch.rand(128, 128, 3) * 255).byte().numpy()).save(tmp_path / "noise.png")

    _, bad = send(c, session, files=[handle_file(str(tmp_path / "notes.png"))])
    assert "isn't an image" in texts(bad[CHAT])[-1]
    assert degrees(bad) == degrees(shown) and torch.equal(pixels(bad[PNG]), pixels(shown[PNG]))
    _, noise = send(c, session, files=[handle_file(str(tmp_path / "noise.png"))])
    assert "couldn't find a face" in texts(noise[CHAT])[-1]
    assert torch.equal(pixels(noise[PNG]), pixels(shown[PNG]))

    streamed, good = send(c, session, "describe", files=[handle_file(str(tmp_path / "me.png"))])
    assert texts(good[CHAT])[-3].startswith("Got it.")
    previews = [o[PREVIEW] for o in streamed[:-1] if isinstance(o[PREVIEW], str)]  # describe draws no frames
    assert len(previews) >= 2, "the inversion's reconstructions should stream into the preview"
    assert not torch.equal(pixels(good[PNG]), pixels(shown[PNG]))
    error = (pixels(good[PNG]).float() / 255 - portrait.permute(1, 2, 0)).pow(2).mean()
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
def test_killing_and_restarting_the_server_restores_the_conversation_and_face(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "chatedit.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_up(url, proc)
        c = client(url)
        session = start(c)[SESSION]
        _, before = send(c, session, "add thin glasses")
        face = pixels(before[PNG])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_up(url, proc)
        c = client(url)
        after = start(c, session)
        assert after[SESSION] == session
        assert texts(after[CHAT]) == texts(before[CHAT])
        assert len(images(after[CHAT])) == len(images(before[CHAT]))
        assert degrees(after) == degrees(before)
        assert torch.equal(pixels(after[PNG]), face)
        undone = c.predict(session, api_name="/undo")  # the history came back too, not only the picture
        assert undone[STATUS].count("undo") and texts(undone[CHAT])[-2] == "[undo]"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_idle_sessions_leave_memory_and_come_back_from_the_store(server, monkeypatch):
    url, app = server
    monkeypatch.setattr("chatedit.ui.app.MAX_OPEN_SESSIONS", 2)
    c = client(url)
    first = start(c)
    others = [start(c)[SESSION] for _ in range(3)]
    assert first[SESSION] not in app.agent.sessions and len(app.agent.sessions) <= 3
    again = start(c, first[SESSION])
    assert again[SESSION] == first[SESSION] and texts(again[CHAT]) == texts(first[CHAT])
    assert all(s in app.store.ids() for s in others)


def test_a_long_edit_does_not_hold_up_another_sessions_page(server, monkeypatch):
    import chatedit.editor

    url, _ = server
    real_edit = chatedit.editor.edit

    def slow_edit(*args, **kwargs):
        time.sleep(3.0)
        return real_edit(*args, **kwargs)

    monkeypatch.setattr(chatedit.editor, "edit", slow_edit)
    busy = [client(url) for _ in range(2)]  # as many edits as the queue runs at once (concurrency=2)
    jobs = [c.submit({"text": "make them look older", "files": []}, start(c)[SESSION], api_name="/send")
            for c in busy]
    time.sleep(0.5)  # both edits are walking now
    began = time.perf_counter()
    other = start(client(url))
    waited = time.perf_counter() - began
    assert len(other[SESSION]) == 32 and waited < 2.5 and not any(job.done() for job in jobs)
    for job in jobs:
        job.result()


def test_the_launch_limits_uploads_and_serves_only_the_app_folders(tmp_path):
    from chatedit.ui.server import launch_kwargs

    class App:
        class store:  # noqa: N801 - a stand-in with the one attribute launch_kwargs reads
            images_dir = tmp_path / "images"

    kwargs = launch_kwargs(ServeOptions(max_upload_mb=2, auth=[("a", "b")]), App)
    assert kwargs["max_file_size"] == "2048kb" and kwargs["allowed_paths"] == [str(tmp_path / "images")]
    assert kwargs["auth"] == [("a", "b")] and kwargs["server_name"] == "127.0.0.1"
