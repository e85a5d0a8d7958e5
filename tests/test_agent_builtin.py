"""The agent on the shipped built-in models: what a person sees in the first minute."""

import pytest
import torch

from chatedit.agent import Agent, FrameEvent, Reply, ToolEvent
from chatedit.editor import Editor
from chatedit.rules_model import RulesChatModel
from chatedit.tools.builtin.backend import BuiltinBackend


@pytest.fixture(scope="module")
def agent():
    return Agent(Editor(BuiltinBackend.load()), RulesChatModel())


def first_seed(agent, **degrees):
    for seed in range(200):
        _, read = agent.editor.read(agent.editor.backend.sample(seed))
        if all(read[k] == v for k, v in degrees.items()):
            return seed
    pytest.fail(f"no face with {degrees} among 200 seeds")


def test_add_glasses_streams_frames_then_undo_restores_the_face_exactly(agent):
    session, opened = agent.open("glasses", seed=first_seed(agent, eyeglasses=0))
    assert "wear no glasses" in opened.text
    start = session.state.current.latent.clone()
    events = list(agent.chat("glasses", "add glasses please"))
    frames = [e for e in events if isinstance(e, FrameEvent)]
    tool = next(e for e in events if isinstance(e, ToolEvent))
    reply = events[-1]
    assert isinstance(reply, Reply) and tool.ok and tool.changed
    assert len(frames) >= 2 and all(f.image.shape == (3, 128, 128) for f in frames)
    assert reply.degrees["eyeglasses"] >= 1 and "glasses" in reply.text
    assert "Traceback" not in reply.text

    reply = agent.respond("glasses", "undo")
    assert reply.degrees["eyeglasses"] == 0 and "no glasses" in reply.text
    assert torch.equal(session.state.current.latent, start)
    reply = agent.respond("glasses", "redo")
    assert reply.degrees["eyeglasses"] >= 1


def test_new_face_with_a_seed_is_the_same_face_every_time(agent):
    a, _ = agent.open("a", seed=5)
    b, _ = agent.open("b")
    agent.respond("b", "show me a new face with seed 5")
    assert torch.equal(a.state.current.latent, b.state.current.latent)


@pytest.mark.parametrize("lead_in", ["", "ok now ", "alright, now ", "great, next "])
def test_a_leading_ok_before_a_request_of_its_own_neither_says_yes_nor_changes_the_request(agent, lead_in):
    """After "Shall I make the smile bigger?", "ok now add glasses to him, not too dark" over dark sunglasses
    is plain glasses (the add's typical degree), and the smile stays as it is."""
    session_id = f"lead-in-{lead_in.strip(' ,')}"
    agent.open(session_id, seed=first_seed(agent, eyeglasses=0))
    assert agent.respond(session_id, "give him thin-framed sunglasses").degrees["eyeglasses"] == 4
    asked = agent.respond(session_id, "make him smile a little more")
    assert "?" in asked.text
    reply = agent.respond(session_id, f"{lead_in}add glasses to him, not too dark")
    assert reply.degrees["eyeglasses"] == 2
    assert reply.degrees["smiling"] == asked.degrees["smiling"]
