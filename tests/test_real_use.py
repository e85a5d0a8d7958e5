"""What a person meets on a real installation, with cheap stand-ins for the models: an OpenCV without
Haar cascades (opencv-python 5, which insightface pulls in), and a new page session on a backend that
edits photos (which draws nothing until it gets a photo or is asked for a face)."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import chatedit
from chatedit.agent import Agent, Reply
from chatedit.editor import EditError, Editor
from chatedit.feedback import load_feedback
from chatedit.images import from_pil
from chatedit.intake import read_photo
from chatedit.rules_model import RulesChatModel
from chatedit.sessions import SessionService
from chatedit.store import SessionStore
from chatedit.tools.align import FaceMarks, NoFaceDetector, align_face, detect_face
from chatedit.tools.backend import Capabilities
from chatedit.tools.builtin.data import render_set

from fakes import OpenWorld

FEEDBACK = load_feedback()


class AligningWorld(OpenWorld):
    """The open world taking photos as the photo backends do: the face found by ``detect_face``, then aligned."""

    capabilities = Capabilities(streams_inversion=False, photos=True)

    def intake(self, picture: Image.Image) -> torch.Tensor:
        return from_pil(align_face(picture, detect_face(picture), 32), 32)


def portrait() -> Image.Image:
    """A rendered face on a grey canvas: a picture OpenCV's cascades find a face in."""
    render = Image.fromarray(render_set(10, 1, seed=5).images[1].permute(1, 2, 0).numpy()).resize((384, 384))
    canvas = Image.new("RGB", (600, 600), (128, 128, 128))
    canvas.paste(render, (150, 100))
    return canvas


def without_dlib(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "chatedit.faces", None)  # ``from chatedit import faces`` raises ImportError
    monkeypatch.delattr(chatedit, "faces", raising=False)


# --------------------------------------------------------------------------- a. intake whatever OpenCV is installed


@pytest.mark.parametrize("how", ["no CascadeClassifier", "no cascade files"])
def test_an_opencv_without_haar_cascades_refuses_the_upload_in_a_sentence(monkeypatch, tmp_path, how, caplog):
    without_dlib(monkeypatch)
    if how == "no CascadeClassifier":  # opencv-python 5.x
        monkeypatch.delattr(cv2, "CascadeClassifier")
    else:
        monkeypatch.setattr(cv2, "data", types.SimpleNamespace(haarcascades=str(tmp_path)))
    with pytest.raises(EditError) as refused:
        read_photo(AligningWorld(), portrait())
    assert str(refused.value) == FEEDBACK.say("upload.no_detector")
    assert "opencv" in caplog.text.lower() and "--face-models" in caplog.text  # the log says what to install
    with pytest.raises(NoFaceDetector):  # never an AttributeError of OpenCV's
        detect_face(portrait())


def test_dlibs_detector_is_used_first_when_it_can_run(monkeypatch):
    marks = FaceMarks((250.0, 260.0), (350.0, 260.0), (262.0, 375.0), (338.0, 375.0), (200, 180, 400, 420), 1.0)
    seen = []
    found = types.SimpleNamespace(marks=lambda: marks)  # a ``chatedit.faces.Face``, as far as alignment goes
    fake = types.SimpleNamespace(available=lambda: True, detect=lambda picture: seen.append(picture.size) or [found])
    monkeypatch.setitem(sys.modules, "chatedit.faces", fake)
    monkeypatch.setattr(chatedit, "faces", fake, raising=False)
    monkeypatch.delattr(cv2, "CascadeClassifier")  # dlib's detector needs none of OpenCV's cascades
    face = read_photo(AligningWorld(), portrait())
    assert face.shape == (3, 32, 32) and seen == [(600, 600)]
    assert detect_face(portrait()) == marks


def test_an_unavailable_dlib_falls_back_to_opencv(monkeypatch):
    fake = types.SimpleNamespace(available=lambda: False, detect=lambda picture: pytest.fail("dlib cannot run"))
    monkeypatch.setitem(sys.modules, "chatedit.faces", fake)
    monkeypatch.setattr(chatedit, "faces", fake, raising=False)
    found = detect_face(portrait())
    assert found.left_eye[0] < found.right_eye[0]


# --------------------------------------------------------------------------- d. a new session on a photo backend


class CountingPhotoWorld(AligningWorld):
    """A photo backend that counts the faces it draws and inverts."""

    def __init__(self):
        super().__init__()
        self.drawn = {"sample": 0, "encode": 0}

    def sample(self, seed):
        self.drawn["sample"] += 1
        return super().sample(seed)

    def encode(self, image, refine_steps: int = 0, on_progress=None):
        self.drawn["encode"] += 1
        return super().encode(image, refine_steps, on_progress)


def test_a_new_session_on_a_photo_backend_asks_for_a_photo_and_draws_nothing_until_asked(tmp_path):
    world = CountingPhotoWorld()
    sessions = SessionService(Agent(Editor(world), RulesChatModel()), SessionStore(tmp_path / "data"), "photos")
    sid = sessions.ensure(None)
    assert world.drawn == {"sample": 0, "encode": 0}
    greeting = sessions.chat_log(sid)
    assert [(line.role, line.text, line.image) for line in greeting] == \
        [("assistant", FEEDBACK.say("greeting_photo"), None)]
    view = sessions.view(sid)
    assert view.image is None and view.after is None and view.degrees == {} and sessions.degrees(sid) == {}
    with pytest.raises(EditError, match="no face yet"):
        sessions.face_png(sid)
    # an edit before any face says so and draws nothing
    said = [e for e in sessions.chat(sid, "more smile") if isinstance(e, Reply)]
    assert said[-1].image is None and world.drawn == {"sample": 0, "encode": 0}
    # the saved faceless session comes back as it was, still drawing nothing
    again = SessionService(Agent(Editor(world), RulesChatModel()), SessionStore(tmp_path / "data"), "photos")
    assert again.ensure(sid) == sid and again.view(sid).image is None
    assert world.drawn == {"sample": 0, "encode": 0}
    # asked for: a new face is drawn
    reply = [e for e in again.chat(sid, "new face") if isinstance(e, Reply)][-1]
    assert reply.image is not None and world.drawn["sample"] == 1 and again.view(sid).image is not None


def test_the_page_opens_a_faceless_session_on_a_photo_backend(tmp_path):
    """The page and MCP's start show the photo request and no face, the sliders at 0, nothing drawn."""
    from chatedit.ui.app import build_page

    world = CountingPhotoWorld()
    sessions = SessionService(Agent(Editor(world), RulesChatModel()), SessionStore(tmp_path / "data"), "photos")
    _, app = build_page(sessions)
    shown, w = app.start(None), app.widgets
    assert shown[w.png] is None and shown[w.before_after] is None
    assert all(shown[slider] == 0 for slider in w.sliders.values())
    assert FEEDBACK.say("greeting_photo") in [m["content"] for m in shown[w.chatbot]]
    moved = list(app.slider("smiling", 3, shown[w.session]))  # a slider before any face: said, not a crash
    assert moved[-1][w.png] is None and world.drawn == {"sample": 0, "encode": 0}


def test_a_backend_that_draws_its_own_faces_still_opens_with_one(tmp_path):
    world = CountingPhotoWorld()
    world.capabilities = Capabilities(streams_inversion=False, photos=False)
    sessions = SessionService(Agent(Editor(world), RulesChatModel()), SessionStore(tmp_path / "data"), "drawn")
    sid = sessions.ensure(None)
    assert world.drawn["sample"] == 1 and sessions.view(sid).image is not None


def test_an_agent_opened_without_drawing_has_no_face_and_a_photo_gives_it_one():
    world = CountingPhotoWorld()
    agent = Agent(Editor(world), RulesChatModel())
    session, outcome = agent.open("s", draw=False)
    assert not session.state.has_face and outcome.image is None and world.drawn["sample"] == 0
    face = world.generate(torch.tensor([[0.0, 0.0, 0.0, 2.0, 1.0]]))[0]
    reply = agent.upload("s", face)
    assert reply.degrees["smiling"] == 2 and np.isclose(float(reply.image[0, 0, 3]), 2.0)
