"""An uploaded photo streams its inversion like an edit streams its walk: the reconstruction forms
frame by frame (editor → agent → page), the finished face is pushed once, and a refused photo
leaves the session as it was. On the shipped built-in models and on tiny random StyleGAN2 files."""

import pytest
import torch
from PIL import Image

from chatedit.agent import Agent, FrameEvent, Reply
from chatedit.editor import EditError, Editor
from chatedit.images import to_pil
from chatedit.rules_model import RulesChatModel
from chatedit.state import DialogState
from chatedit.tools.builtin.backend import BuiltinBackend
from chatedit.tools.builtin.renderer import render, sample_portraits

from fakes import OpenWorld
from test_stylegan2_backend import load, weights  # noqa: F401  (tiny random Talk-to-Edit files, a fixture)


@pytest.fixture(scope="module")
def builtin():
    return BuiltinBackend.load(device="cpu")


@pytest.fixture(scope="module")
def portrait():
    return render(sample_portraits(1, 424242))[0]  # (3, 128, 128): a face the built-in models can redraw


def snapshot(agent, session_id):
    session = agent.session(session_id)
    state = session.state
    return (len(state.entries), state.index, state.current.latent.clone(), len(state.turns), len(session.messages))


def same(a, b):
    return a[:2] == b[:2] and torch.equal(a[2], b[2]) and a[3:] == b[3:]


# --------------------------------------------------------------------------- the editor


def test_the_editor_shows_the_reconstruction_forming_then_pushes_the_result_once(builtin, portrait):
    editor = Editor(builtin, refine_steps=40)
    assert builtin.capabilities.streams_inversion
    state = DialogState()
    seen = []
    outcome = editor.upload(state, portrait, on_progress=lambda step, image: seen.append((step, image.clone())))
    assert [step for step, _ in seen] == [0, 10, 20, 30]
    assert all(image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1 for _, image in seen)
    assert len(state.entries) == 1 and outcome.changed
    final = editor.image(state)
    assert not torch.equal(seen[-1][1], final)  # the last progress frame is not the face pushed
    assert (seen[-1][1] - final).abs().max() < 0.25  # but nearly it


def test_a_backend_that_declares_no_streaming_inversion_still_uploads():
    world = OpenWorld()
    editor = Editor(world)
    assert not world.capabilities.streams_inversion
    seen = []
    image = world.generate(torch.tensor([[1.0, 0.0, 2.0, 3.0, 1.0]]))[0]
    editor.upload(DialogState(), image, on_progress=lambda step, frame: seen.append(step))
    assert seen == []  # nothing to show: the editor does not hand the callback to such a backend
    agent = Agent(Editor(world), RulesChatModel())
    agent.open("s")
    events = list(agent.upload_events("s", image))
    assert len(events) == 1 and isinstance(events[0], Reply)


# --------------------------------------------------------------------------- the agent


def test_the_agent_streams_inversion_frames_before_the_reply(builtin, portrait):
    agent = Agent(Editor(builtin, refine_steps=40), RulesChatModel())
    session, _ = agent.open("photo", seed=3)
    events = list(agent.upload_events("photo", portrait, said="[uploaded me.png]"))
    frames, reply = events[:-1], events[-1]
    assert isinstance(reply, Reply) and len(frames) == 4
    assert all(isinstance(f, FrameEvent) and f.inversion and not f.preview and f.degrees == {} for f in frames)
    assert all(f.image.shape == (3, 128, 128) for f in frames)
    assert len({f.call_id for f in frames}) == 1 and frames[0].call_id.startswith("upload_")
    assert [f.step for f in frames] == [0, 10, 20, 30]
    assert not torch.equal(frames[-1].image, reply.image)
    assert torch.equal(reply.image, agent.editor.image(session.state))  # the reply shows the face pushed
    assert session.state.current.action == "uploaded photo" and session.state.current.face == 1
    assert [m.text for m in session.messages] == ["[uploaded me.png]", reply.text]


def test_refused_photos_change_nothing(builtin):
    agent = Agent(Editor(builtin, refine_steps=20), RulesChatModel())
    agent.open("refused", seed=4)
    before = snapshot(agent, "refused")
    # blank: refused before the inversion starts, so not one frame
    events = []
    with pytest.raises(EditError, match="blank"):
        for event in agent.upload_events("refused", torch.full((3, 128, 128), 0.5)):
            events.append(event)
    assert events == [] and same(snapshot(agent, "refused"), before)
    # noise: refused once inverted (it cannot be redrawn as a face); its frames were only shown
    noise = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    with pytest.raises(EditError, match="draws its own portraits|redraw the face"):
        for event in agent.upload_events("refused", noise):
            events.append(event)
    assert len(events) == 2 and all(e.inversion for e in events)
    assert same(snapshot(agent, "refused"), before)


def test_stylegan2_uploads_stream_their_inversion(weights):  # noqa: F811
    agent = Agent(Editor(load(weights), refine_steps=25, max_steps=4), RulesChatModel())
    session, _ = agent.open("sg2", seed=2)
    target = agent.editor.backend.generate(agent.editor.backend.sample(11))[0]
    events = list(agent.upload_events("sg2", target))
    frames, reply = events[:-1], events[-1]
    assert [f.step for f in frames] == [0, 10, 20] and all(f.inversion for f in frames)
    assert all(f.image.shape == (3, 32, 32) and f.image.dtype == torch.float32 for f in frames)
    assert isinstance(reply, Reply) and not torch.equal(frames[-1].image, reply.image)
    assert torch.equal(reply.image, agent.editor.image(session.state))
    before = snapshot(agent, "sg2")
    with pytest.raises(EditError, match="blank"):
        list(agent.upload_events("sg2", torch.zeros(3, 32, 32)))
    assert same(snapshot(agent, "sg2"), before)


# --------------------------------------------------------------------------- the page


def test_the_page_shows_the_reconstruction_in_the_live_preview(builtin, portrait, tmp_path):
    pytest.importorskip("gradio")
    from chatedit.sessions import SessionService
    from chatedit.store import SessionStore
    from chatedit.ui.app import build_page
    from test_ui import frame

    agent = Agent(Editor(builtin, refine_steps=40), RulesChatModel())
    _, app = build_page(SessionService(agent, SessionStore(tmp_path / "data"), "builtin"))
    preview = app.widgets.preview
    session_id = app.sessions.ensure(None)
    state = agent.session(session_id).state
    to_pil(portrait).save(tmp_path / "me.png")
    outputs = list(app.send({"text": "", "files": [str(tmp_path / "me.png")]}, session_id))
    previews = [frame(o.get(preview)) for o in outputs[:-1] if frame(o.get(preview)) is not None]
    assert len(previews) >= 2 and all(p.size == (128, 128) for p in previews)
    assert app.widgets.chatbot in outputs[-1] and app.widgets.png in outputs[-1]  # then the full view
    assert state.current.action == "uploaded photo"
    chat = app.chat_messages(session_id)
    assert chat[-4]["content"] == "[uploaded me.png]" and chat[-2]["content"].startswith("Got it.")
    assert chat[-3]["role"] == "user" and "path" in chat[-3]["content"]  # the photo as sent

    before = (len(state.entries), state.current.latent.clone())
    Image.new("RGB", (200, 200), (120, 120, 120)).save(tmp_path / "grey.png")
    outputs = list(app.send({"text": "", "files": [str(tmp_path / "grey.png")]}, session_id))
    assert not [o for o in outputs[:-1] if frame(o.get(preview)) is not None]  # a blank photo shows no frame
    assert len(state.entries) == before[0] and torch.equal(state.current.latent, before[1])
    assert "blank" in app.chat_messages(session_id)[-1]["content"].lower()
