"""Issue #33: what the built-in chat model does with a message it understood only in part, or not at all.

Understood in part: it does what it understood, says so, and asks about the rest. Not understood
but for the attribute: it offers the closest edit ("Did you mean: add a gentle smile?"), and a
"yes" runs it. Nothing understood: it says what it can do, and offers nothing.
"""

import pytest
from fakes import OpenWorld

from chatedit.agent import Agent
from chatedit.editor import Editor
from chatedit.rules_model import RulesChatModel


@pytest.fixture()
def agent():
    return Agent(Editor(OpenWorld()), RulesChatModel())


def open_face(agent, **degrees):
    session, _ = agent.open("s", seed=3)
    for attribute, degree in degrees.items():
        agent.editor.edit(session.state, attribute, target=degree)
    session.state.question = None
    return session


def test_did_you_mean_offers_the_closest_edit_and_yes_runs_it(agent):
    session = open_face(agent, smiling=0)
    reply = agent.respond("s", "make her smile fancier")
    assert reply.calls == [] and reply.text.endswith("?") and "Did you mean: add a gentle smile" in reply.text
    assert session.state.question == {"name": "edit_attribute", "args": {"attribute": "smiling", "target": 2}}
    reply = agent.respond("s", "yes")
    assert [c["args"] for c in reply.calls] == [{"attribute": "smiling", "target": 2}]
    assert reply.degrees["smiling"] == 2


def test_with_some_already_the_offer_is_one_degree_more(agent):
    session = open_face(agent, beard=2)
    reply = agent.respond("s", "his beard needs to be more rugged")
    assert reply.calls == [] and "grow the beard further?" in reply.text
    assert session.state.question["args"] == {"attribute": "beard", "change": 1}


def test_no_after_did_you_mean_changes_nothing(agent):
    session = open_face(agent, smiling=0)
    agent.respond("s", "make her smile fancier")
    before = dict(session.state.current.degrees)
    reply = agent.respond("s", "no thanks")
    assert reply.calls == [] and reply.degrees == before


def test_understood_in_part_does_that_part_and_asks_about_the_rest(agent):
    session = open_face(agent, age=1, eyeglasses=2)
    reply = agent.respond("s", "make him older and his glasses more hip")
    assert [c["args"]["attribute"] for c in reply.calls] == ["age"]
    assert "forties" in reply.text   # what was done, in the scale's words
    assert "wasn't sure what you wanted with the glasses" in reply.text and reply.text.endswith("?")
    assert session.state.question["args"]["attribute"] == "eyeglasses"
    reply = agent.respond("s", "yes")
    assert [c["args"]["attribute"] for c in reply.calls] == ["eyeglasses"] and reply.degrees["eyeglasses"] == 3


def test_nothing_understood_offers_nothing(agent):
    session = open_face(agent)
    reply = agent.respond("s", "asdf qwerty zxcv")
    assert reply.calls == [] and "I'm not sure what to change" in reply.text
    assert session.state.question is None
