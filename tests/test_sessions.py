"""The session service: sessions open, come back from the store, leave memory when idle, are written
after every turn; photos are taken in once for every front end; the downloads are the face shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chatedit.agent import Agent, FrameEvent, Reply
from chatedit.editor import EditError, Editor
from chatedit.feedback import load_feedback
from chatedit.images import to_pil
from chatedit.rules_model import RulesChatModel
from chatedit.sessions import Said, SessionService, read_photo, throttle
from chatedit.store import KEPT_VERSIONS, SessionStore
from chatedit.tools.align import NoFaceFound
from chatedit.tools.backend import Capabilities
from chatedit.tools.builtin.backend import BuiltinBackend

from fakes import OpenWorld
from test_stylegan2_backend import load, portrait, weights  # noqa: F401  (tiny random Talk-to-Edit files)

FEEDBACK = load_feedback()


class PhotoWorld(OpenWorld):
    """The open world drawn in [0, 1] (a degree of 5 is a white pixel), taking photos: a picture's
    top-left pixels hold the five degrees; a picture whose top-left pixel is pure blue has no face."""

    capabilities = Capabilities(streams_inversion=False, gif_frames_per_step=2)

    def intake(self, picture: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
        if pixels[:, 0, 0].tolist() == [0.0, 0.0, 255.0]:
            raise NoFaceFound("no face")
        image = torch.zeros(3, 8, 8)
        image[0, 0, :5] = pixels[0, 0, :5] / 5
        return image

    def encode(self, image, refine_steps: int = 0, on_progress=None):
        return super().encode(image * 5, refine_steps, on_progress)

    def generate(self, w, on_preview=None):
        return super().generate(w, on_preview) / 5

    def predict(self, image):
        return super().predict(image * 5)


def service(tmp_path, backend=None, **options) -> SessionService:
    agent = Agent(Editor(backend or PhotoWorld()), RulesChatModel())
    return SessionService(agent, SessionStore(tmp_path / "data"), "open-world", **options)


def photo_of(values: list[float], path) -> None:
    pixels = np.full((8, 8, 3), 7, dtype=np.uint8)
    pixels[4:] = 200  # not a blank picture
    pixels[0, :5, 0] = values
    Image.fromarray(pixels).save(path)


def faceless(path) -> None:
    """A picture with something in it, but no face (for ``PhotoWorld``)."""
    pixels = np.full((20, 20, 3), 90, dtype=np.uint8)
    pixels[:10] = (0, 0, 255)
    Image.fromarray(pixels).save(path)


def lines(sessions: SessionService, session_id: str) -> list:
    return [line.text if line.image is None else "<face>" for line in sessions.chat_log(session_id)]


# --------------------------------------------------------------------------- open, restore, evict, save


def test_a_new_session_greets_with_a_face_and_is_stored_at_once(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    assert len(sid) == 32 and sid in sessions.agent.sessions
    assert lines(sessions, sid)[0].startswith("Here is a new face") and lines(sessions, sid)[1] == "<face>"
    assert sessions.chat_log(sid)[1].image.is_file()
    assert sessions.store.load(sid).chat[0]["text"] == lines(sessions, sid)[0]
    assert sessions.ensure(sid) == sid  # asked again: the same session
    assert sessions.ensure("../../etc/passwd") != sid  # not an id: a new session, no path touched


def test_a_session_comes_back_from_the_store_in_a_new_process(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    list(sessions.chat(sid, "add thick glasses"))
    before = (lines(sessions, sid), sessions.degrees(sid))

    again = service(tmp_path)  # a restart: a new agent over the same files
    assert again.ensure(sid) == sid
    assert (lines(again, sid), again.degrees(sid)) == before
    assert again.view(sid).undo == 1  # the history came back too, not only the face
    list(again.act(sid, "undo", {"steps": 1}, "[undo]"))
    assert again.degrees(sid)["eyeglasses"] != before[1]["eyeglasses"]


def test_a_page_sees_a_turn_another_process_saved_and_a_servers_own_store_is_not_asked(tmp_path):
    a, b = service(tmp_path), service(tmp_path)  # two processes on one folder, neither holding its lock
    sid = a.ensure(None)
    assert b.ensure(sid) == sid
    list(a.chat(sid, "add thick glasses"))
    assert b.ensure(sid) == sid and (lines(b, sid), b.degrees(sid)) == (lines(a, sid), a.degrees(sid))

    agent = Agent(Editor(PhotoWorld()), RulesChatModel())
    server = SessionService(agent, SessionStore(tmp_path / "own", exclusive=True), "open-world")
    sid = server.ensure(None)
    try:
        server.store.version = None  # a page request on a server's own store reads nothing back
        assert server.ensure(sid) == sid
    finally:
        server.store.lock.release()


def test_idle_sessions_leave_memory_and_a_busy_one_stays(tmp_path):
    sessions = service(tmp_path, max_open=2)
    first = sessions.ensure(None)
    chat = lines(sessions, first)
    busy = sessions.ensure(None)
    sessions.agent.session(busy).lock.acquire()  # a turn is running in it
    try:
        others = [sessions.ensure(None) for _ in range(3)]
        assert first not in sessions.agent.sessions and busy in sessions.agent.sessions
        assert len(sessions.agent.sessions) <= 3
    finally:
        sessions.agent.session(busy).lock.release()
    assert sessions.ensure(first) == first and lines(sessions, first) == chat
    assert set(others) <= set(sessions.store.ids())


def test_a_turn_is_stored_even_when_its_reader_stops_early(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    events = sessions.chat(sid, "add thick glasses")
    said = next(events)
    assert isinstance(said, Said) and said.line.text == "add thick glasses"
    events.close()  # the browser went away: the turn still runs to its end, and is stored
    assert sessions.idle(sid, timeout=30)
    stored = sessions.store.load(sid)
    assert [line["text"] for line in stored.chat[-3:]][0] == "add thick glasses" and stored.chat[-2]["image"]
    assert stored.chat[-1]["text"] == stored.state.turns[-1].reply


def test_a_turn_records_the_chat_and_hands_on_the_agents_events(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    events = list(sessions.act(sid, "edit_attribute", {"attribute": "smiling", "target": 4}, "[slider] Smile → 4"))
    assert any(isinstance(e, FrameEvent) for e in events) and isinstance(events[-2], Reply)
    said = [e.line for e in events if isinstance(e, Said)]
    assert said[0].text == "[slider] Smile → 4" and said[1].image is not None and said[2].text == events[-2].text
    assert sessions.degrees(sid)["smiling"] == 4
    assert sessions.store.load(sid).chat == [
        {"role": line.role, "text": line.text,
         "image": None if line.image is None else sessions.store.relative(line.image),
         **({"words": line.words} if line.words else {})}
        for line in sessions.chat_log(sid)]
    faces = [line for line in sessions.chat_log(sid) if line.image is not None]
    assert "a big smile showing teeth" in faces[-1].words  # each face says what it showed (its alt text)


def test_a_failing_turn_says_so_and_keeps_the_session(tmp_path, monkeypatch):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    degrees = sessions.degrees(sid)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
        yield

    monkeypatch.setattr(sessions.agent, "chat", broken)
    list(sessions.chat(sid, "smile"))
    assert lines(sessions, sid)[-2:] == ["smile", "Something went wrong on my side; the face was left as it was."]
    assert sessions.degrees(sid) == degrees and sessions.store.load(sid).chat[-1]["text"].startswith("Something")


# --------------------------------------------------------------------------- photos


def test_intake_refuses_what_is_not_an_image_or_shows_no_face(tmp_path):
    backend = PhotoWorld()
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(EditError) as refusal:
        read_photo(backend, tmp_path / "notes.png")
    assert str(refusal.value) == FEEDBACK.say("upload.not_image", name="notes.png")
    with pytest.raises(EditError, match="isn't an image"):
        read_photo(backend, str(tmp_path / "missing.png"))
    faceless(tmp_path / "faceless.png")
    with pytest.raises(EditError) as refusal:
        read_photo(backend, tmp_path / "faceless.png")
    assert str(refusal.value) == FEEDBACK.say("upload.face_not_found")
    photo_of([1, 2, 3, 4, 0], tmp_path / "me.png")
    face = read_photo(backend, tmp_path / "me.png")
    assert (face[0, 0, :5] * 5).round().tolist() == [1, 2, 3, 4, 0]
    with Image.open(tmp_path / "me.png") as picture:  # an open picture is taken as well as a file
        assert torch.equal(read_photo(backend, picture), face)


def test_an_upload_starts_a_new_face_and_a_refused_one_changes_nothing(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    state = sessions.agent.session(sid).state
    entries = len(state.entries)
    faceless(tmp_path / "faceless.png")
    list(sessions.upload(sid, tmp_path / "faceless.png"))
    assert lines(sessions, sid)[-3:] == ["[uploaded faceless.png]", "<face>", FEEDBACK.say("upload.face_not_found")]
    assert sessions.chat_log(sid)[-2].role == "user"  # the photo as sent, in the person's own line
    assert len(state.entries) == entries and sessions.store.load(sid).chat[-1]["text"].startswith("I couldn't")

    photo_of([1, 2, 3, 4, 0], tmp_path / "me.png")
    list(sessions.upload(sid, str(tmp_path / "me.png")))
    assert state.current.action == "uploaded photo" and sessions.degrees(sid)["smiling"] == 4
    assert lines(sessions, sid)[-4:-2] == ["[uploaded me.png]", "<face>"] and lines(sessions, sid)[-2].startswith("Got it.")
    assert lines(sessions, sid)[-1] == "<face>"
    assert "me.png" not in "".join(m.text for m in sessions.agent.session(sid).messages)  # the model hears of a photo


def test_a_stylegan2_session_refuses_a_faceless_photo_and_keeps_its_face(weights, portrait, tmp_path):  # noqa: F811
    agent = Agent(Editor(load(weights), refine_steps=5, max_steps=4), RulesChatModel())
    sessions = SessionService(agent, SessionStore(tmp_path / "data"), "stylegan2")
    sid = sessions.ensure(None)  # a photo backend's session starts with no face: it asks for a photo
    list(sessions.chat(sid, "new face"))
    state = agent.session(sid).state
    entries, latent = len(state.entries), state.current.latent.clone()
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    list(sessions.upload(sid, tmp_path / "noise.png"))
    assert sessions.chat_log(sid)[-1].text == FEEDBACK.say("upload.face_not_found")
    assert len(state.entries) == entries and torch.equal(state.current.latent, latent)  # the face as it was
    portrait[0].save(tmp_path / "me.png")
    list(sessions.upload(sid, tmp_path / "me.png"))
    assert len(state.entries) == entries + 1 and state.current.action == "uploaded photo"  # a face: taken


# --------------------------------------------------------------------------- downloads


def test_the_downloads_are_the_face_shown_and_its_edit_path(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    list(sessions.chat(sid, "add thick glasses"))
    view = sessions.view(sid)
    face = sessions.agent.editor.image(sessions.agent.session(sid).state)
    assert np.array_equal(np.asarray(Image.open(view.image)), np.asarray(to_pil(face)))
    assert np.array_equal(np.asarray(view.after), np.asarray(to_pil(face))) and view.before.size == view.after.size
    assert view.identity == 1.0 and (view.undo, view.redo) == (1, 0) and view.degrees == sessions.degrees(sid)
    assert [line.text for line in view.chat] == [line.text for line in sessions.chat_log(sid)]
    # asked for: one history step, drawn at the backend's declared frames per step (2), plus the start
    assert Image.open(sessions.edit_path_gif(sid)).n_frames == 1 + PhotoWorld.capabilities.gif_frames_per_step


def test_the_edit_path_gif_is_drawn_again_only_when_the_history_changed(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    list(sessions.chat(sid, "add thick glasses"))
    gif = sessions.edit_path_gif(sid)
    drawn = sessions.frames.drawn
    sessions.view(sid)
    assert sessions.edit_path_gif(sid) == gif and sessions.frames.drawn == drawn  # asked again: nothing new
    list(sessions.chat(sid, "make them smile a lot"))
    longer = sessions.edit_path_gif(sid)
    assert longer != gif, "a new history is a new file: a page never gets the older GIF from its cache"
    assert Image.open(longer).n_frames == 1 + 2 * 2


def test_the_downloads_of_a_long_session_stay_a_few_files(tmp_path):
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    shown = []
    for text in ["add thick glasses", "make them smile a lot", "no glasses", "no smile", "add glasses"] * 2:
        list(sessions.chat(sid, text))
        shown.append(sessions.view(sid).image)
        sessions.edit_path_gif(sid)
    folder = sessions.store.images_dir / sid
    assert len(list(folder.glob("face-*.png"))) <= KEPT_VERSIONS and shown[-1].exists()
    assert len(list(folder.glob("edit-path-*.gif"))) <= KEPT_VERSIONS


def test_the_builtin_gif_uses_its_declared_frames_per_step(tmp_path):
    sessions = service(tmp_path, backend=BuiltinBackend.load(device="cpu"))
    sid = sessions.ensure(None)
    target = 0 if sessions.degrees(sid)["eyeglasses"] >= 2 else 4
    list(sessions.act(sid, "edit_attribute", {"attribute": "eyeglasses", "target": target}, "[slider]"))
    assert len(sessions.agent.session(sid).state.entries) == 2  # the edit was made
    per_step = sessions.agent.editor.backend.capabilities.gif_frames_per_step
    assert Image.open(sessions.edit_path_gif(sid)).n_frames == 1 + per_step


# --------------------------------------------------------------------------- throttling


def test_throttle_holds_back_fast_frames_and_never_loses_the_last():
    frames = [FrameEvent("c", "smiling", i, torch.zeros(3, 2, 2), {}) for i in range(5)]
    reply = Reply("done", None, {}, [])
    shown = list(throttle([*frames[:3], reply, *frames[3:]], interval_s=60.0))
    assert shown == [frames[0], frames[2], reply, frames[4]]  # each flushed frame starts the interval again
    assert list(throttle(frames, interval_s=0.0)) == frames


def test_a_real_photograph_on_the_builtin_backend_gets_a_plain_refusal_and_is_shown(tmp_path):
    """The built-in backend draws its own portraits: a real photograph (scikit-image's astronaut) is
    refused in a sentence that says so and names the backend that edits photos; no jargon."""
    skimage = pytest.importorskip("skimage")
    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    sessions = service(tmp_path, backend=BuiltinBackend.load(device="cpu"))
    sid = sessions.ensure(None)
    state = sessions.agent.session(sid).state
    before = (len(state.entries), state.current.latent.clone())
    list(sessions.upload(sid, photo))
    said = lines(sessions, sid)
    assert said[-3:-1] == ["[uploaded astronaut.png]", "<face>"]  # the photo, as sent
    assert Image.open(sessions.chat_log(sid)[-2].image).size == (384, 384)  # shown at the chat's size
    refusal = said[-1]
    assert "--backend diffusion" in refusal and "draws its own portraits" in refusal and "dB" not in refusal
    assert len(state.entries) == before[0] and torch.equal(state.current.latent, before[1])


def test_the_session_downloads_cover_the_whole_session_at_display_size(tmp_path):
    """The PNG at the backend's resolution and at display size; the GIF of every face in order with
    what made each step under it; the contact sheet with the words that asked for each face."""
    sessions = service(tmp_path, backend=BuiltinBackend.load(device="cpu"))
    sid = sessions.ensure(None)
    target = 0 if sessions.degrees(sid)["eyeglasses"] >= 2 else 4
    list(sessions.act(sid, "edit_attribute", {"attribute": "eyeglasses", "target": target}, "[slider]"))
    list(sessions.act(sid, "new_face", {}, "[new face]"))
    ask = "make them smile a lot" if sessions.degrees(sid)["smiling"] < 3 else "make them stop smiling"
    list(sessions.chat(sid, ask))
    state = sessions.agent.session(sid).state
    assert Image.open(sessions.face_png(sid)).size == (128, 128)
    assert Image.open(sessions.face_png(sid, display=True)).size == (384, 384)
    gif = Image.open(sessions.session_gif(sid))
    assert gif.size == (384, 384 + 40) and gif.n_frames >= len(state.entries)
    assert len({e.face for e in state.entries}) == 2  # both people, in the one GIF
    first, last = np.asarray(gif.convert("RGB")), None
    gif.seek(gif.n_frames - 1)
    last = np.asarray(gif.convert("RGB"))
    assert np.abs(first[:384].astype(int) - last[:384].astype(int)).mean() > 5  # another face by the end
    assert (last[384:] < 128).any(), "a caption is written under the face"
    # each step's caption: the words that asked for it, or what a control changed
    from chatedit.sessions import _caption
    asked = [e.asked for e in state.entries]
    assert asked[-1] == ask and "[new face]" in asked and "[slider]" in asked
    assert _caption(state.entries[-1], 4).startswith(f'5. "{ask}": smiling')
    assert "[" not in _caption(state.entries[asked.index("[slider]")], 1)
    assert [e.asked for e in sessions.store.load(sid).state.entries] == asked  # kept with the session
    sheet = Image.open(sessions.contact_sheet(sid))
    faces = sum(line.image is not None and line.role == "assistant" for line in sessions.chat_log(sid))
    assert faces >= 3 and sheet.width == min(6, faces) * 192
