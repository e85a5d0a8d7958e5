"""Turns that hold up under real use: a reader that leaves mid-edit, messages sent during an edit,
two tabs on one session, a disk that refuses the write, a bug mid-turn, long sessions, other logins.

Each turn runs in its session's worker to its end whoever listens; these tests check what a
person would notice: the chat, the turn log, the memory and the face agree, in order."""

from __future__ import annotations

import threading
import time

import pytest
from langchain_core.messages import HumanMessage
from PIL import Image

from chatedit.agent import Agent, FrameEvent
from chatedit.sessions import NOT_SAVED, NOT_YOURS, TURN_FAILED, Notice, Queued, Said, SessionService

from test_sessions import PhotoWorld, lines, service


class GatedWorld(PhotoWorld):
    """``PhotoWorld`` whose walk steps can be held (``gate`` cleared) and slowed down (``delay_s``);
    ``walking`` is set once a step has started."""

    def __init__(self, delay_s: float = 0.0):
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.walking = threading.Event()
        self.delay_s = delay_s
        self.generated = 0

    def step(self, method, attribute, w, direction=1):
        self.walking.set()
        assert self.gate.wait(30), "the test never opened the gate"
        time.sleep(self.delay_s)
        return super().step(method, attribute, w, direction)

    def generate(self, w, on_preview=None):
        self.generated += 1
        return super().generate(w, on_preview)


def gated(tmp_path, delay_s: float = 0.0) -> tuple[SessionService, str, GatedWorld]:
    world = GatedWorld(delay_s)
    sessions = service(tmp_path, backend=world)
    return sessions, sessions.ensure(None), world


def snapshot(sessions: SessionService, sid: str) -> dict:
    session = sessions.agent.session(sid)
    return {"degrees": sessions.degrees(sid), "entries": len(session.state.entries), "index": session.state.index,
            "turns": [t.user for t in session.state.turns], "memory": [m.text for m in session.messages],
            "chat": lines(sessions, sid)}


def in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def turns_in_chat(sessions: SessionService, sid: str) -> list[list[str]]:
    """The chat after the greeting, cut at each of the person's lines."""
    chat = [(line.role, line.text if line.image is None else "<face>") for line in sessions.chat_log(sid)]
    turns: list[list[str]] = []
    for role, text in chat[2:]:
        if role == "user":
            turns.append([text])
        else:
            turns[-1].append(text)
    return turns


# --------------------------------------------------------------------------- the reader leaves


def test_a_reader_that_leaves_mid_edit_leaves_a_whole_turn(tmp_path):
    sessions, sid, world = gated(tmp_path)
    target = 4 if sessions.degrees(sid)["age"] < 3 else 0
    events = sessions.act(sid, "edit_attribute", {"attribute": "age", "target": target}, "[slider] Age → 4")
    first = next(e for e in events if isinstance(e, FrameEvent))
    assert first.step >= 0
    events.close()  # the tab was closed mid-edit

    list(sessions.chat(sid, "add thick glasses"))
    state, messages = sessions.agent.session(sid).state, sessions.agent.session(sid).messages
    assert [t.user for t in state.turns] == ["[slider] Age → 4", "add thick glasses"]
    assert [m.text for m in messages if isinstance(m, HumanMessage)] == ["[slider] Age → 4", "add thick glasses"]
    assert [turn[0] for turn in turns_in_chat(sessions, sid)] == ["[slider] Age → 4", "add thick glasses"]
    assert all(turn[1] == "<face>" and turn[2] == t.reply for turn, t in zip(turns_in_chat(sessions, sid), state.turns))
    assert state.turns[0].degrees["age"] == target  # the face matches its turn log, turn by turn
    assert state.current.degrees == state.turns[-1].degrees and len(state.entries) == 3
    assert sessions.store.load(sid).state.turns == state.turns


def test_a_reader_that_stops_reading_holds_nothing_up(tmp_path):
    sessions, sid, world = gated(tmp_path)
    abandoned = sessions.chat(sid, "make them smile a lot")
    next(e for e in abandoned if isinstance(e, FrameEvent))  # read mid-edit, then never again, never closed
    done = threading.Event()
    in_thread(lambda: (list(sessions.chat(sid, "add thick glasses")), done.set()))
    assert done.wait(30), "a turn waited for a reader that had stopped reading"
    assert [t.user for t in sessions.agent.session(sid).state.turns] == ["make them smile a lot", "add thick glasses"]
    assert abandoned is not None


def test_an_agent_turn_closed_mid_edit_still_completes(tmp_path):
    sessions, sid, world = gated(tmp_path)
    agent: Agent = sessions.agent
    events = agent.chat(sid, "add thick glasses")
    next(e for e in events if isinstance(e, FrameEvent))
    events.close()
    state = agent.session(sid).state
    assert [t.user for t in state.turns] == ["add thick glasses"] and state.current.degrees == state.turns[0].degrees
    assert not agent.session(sid).lock.locked()


# --------------------------------------------------------------------------- the queue


def test_a_message_sent_during_an_edit_waits_in_the_chat_and_is_answered_after_it(tmp_path):
    sessions, sid, world = gated(tmp_path)
    world.gate.clear()
    first: list = []
    reader = in_thread(lambda: first.extend(sessions.chat(sid, "make them look older")))
    assert world.walking.wait(10), "the first edit never started"
    second = sessions.chat(sid, "add thick glasses")  # sent while the first edit walks
    assert isinstance(next(second), Queued)
    shown = sessions.chat_log(sid)
    assert shown[-1].text == "add thick glasses" and shown[-1].waiting  # in the chat at once, marked
    assert "add thick glasses" not in [line["text"] for line in sessions.store.load(sid).chat]  # nor stored yet
    world.gate.set()
    rest = list(second)
    reader.join(30)
    assert [e.line.text for e in rest if isinstance(e, Said)][0] == "add thick glasses"
    assert [turn[0] for turn in turns_in_chat(sessions, sid)] == ["make them look older", "add thick glasses"]
    assert [t.user for t in sessions.agent.session(sid).state.turns] == ["make them look older", "add thick glasses"]
    assert not any(line.waiting for line in sessions.chat_log(sid))


def test_two_tabs_sending_at_once_see_one_ordered_conversation(tmp_path):
    sessions, sid, world = gated(tmp_path, delay_s=0.02)
    tab_a = ["make them look older", "add thick glasses", "undo"]
    tab_b = ["make them smile a lot", "give them bangs"]
    start = threading.Barrier(2)

    def tab(messages: list[str]) -> None:
        start.wait()
        listeners = [sessions.chat(sid, text) for text in messages]  # sent one after another, not waiting
        for events in listeners:
            list(events)

    threads = [in_thread(lambda: tab(tab_a)), in_thread(lambda: tab(tab_b))]
    for thread in threads:
        thread.join(60)
    turns = turns_in_chat(sessions, sid)
    state = sessions.agent.session(sid).state
    assert sorted(turn[0] for turn in turns) == sorted(tab_a + tab_b)
    assert [turn[0] for turn in turns] == [t.user for t in state.turns]  # the chat and the log agree
    for turn, logged in zip(turns, state.turns):  # each line followed by its own answer, nothing between
        assert turn[-1] == logged.reply and all(text == "<face>" for text in turn[1:-1])
    for messages in (tab_a, tab_b):  # each tab's messages in the order it sent them
        order = [turn[0] for turn in turns if turn[0] in messages]
        assert order == messages


# --------------------------------------------------------------------------- failures


def test_a_failing_write_undoes_the_turn_and_says_so(tmp_path, monkeypatch):
    sessions, sid, world = gated(tmp_path)
    before, stored = snapshot(sessions, sid), sessions.store.load(sid)
    images = sorted(p.name for p in (sessions.store.images_dir / sid).iterdir())

    def disk_full(saved):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sessions.store, "save", disk_full)
    events = list(sessions.chat(sid, "add thick glasses"))
    assert events[-1] == Notice(NOT_SAVED)
    assert snapshot(sessions, sid) == before  # face, history, turn log, memory and chat as they were
    assert sorted(p.name for p in (sessions.store.images_dir / sid).iterdir()) == images  # its face's file removed
    monkeypatch.undo()
    again = sessions.store.load(sid)
    assert (again.chat, [t.user for t in again.state.turns]) == (stored.chat, [t.user for t in stored.state.turns])

    list(sessions.chat(sid, "add thick glasses"))  # the disk has room again: the same request works
    assert [t.user for t in sessions.store.load(sid).state.turns] == ["add thick glasses"]


def test_a_bug_after_the_face_changed_undoes_the_change(tmp_path, monkeypatch):
    sessions, sid, world = gated(tmp_path)
    before = snapshot(sessions, sid)

    def broken_reply(*args, **kwargs):
        raise RuntimeError("a bug at the end of the turn")

    monkeypatch.setattr(sessions.agent, "_reply", broken_reply)
    list(sessions.chat(sid, "add thick glasses"))
    after = snapshot(sessions, sid)
    assert after["chat"] == before["chat"] + ["add thick glasses", TURN_FAILED]  # said so
    assert {k: v for k, v in after.items() if k != "chat"} == {k: v for k, v in before.items() if k != "chat"}
    assert sessions.store.load(sid).chat[-1]["text"] == TURN_FAILED


# --------------------------------------------------------------------------- constant work per turn


def test_a_turn_draws_no_edit_path_and_the_gif_draws_each_frame_once(tmp_path):
    sessions, sid, world = gated(tmp_path)
    for text in ("add thick glasses", "make them smile a lot", "make them look older"):
        list(sessions.chat(sid, text))
        world.generated = 0
        sessions.view(sid)  # what the page asks for at the end of every turn
        assert world.generated <= 2  # the face shown and its original, however long the history
    steps = len(sessions.agent.session(sid).state.entries) - 1
    world.generated = 0
    gif = sessions.edit_path_gif(sid)
    assert world.generated == Image.open(gif).n_frames == 1 + 2 * steps
    list(sessions.chat(sid, "give them bangs"))
    world.generated = 0
    assert Image.open(sessions.edit_path_gif(sid)).n_frames == 1 + 2 * (steps + 1)
    assert world.generated == 2  # only the new step's frames


def test_a_long_history_keeps_the_gif_bounded_and_reuses_drawn_frames():
    import torch

    from chatedit.edit_path import GIF_MAX_FRAMES, plan

    latents = [torch.full((1, 5), float(i)) for i in range(40)]
    full = plan(latents[:20], per_step=6)
    assert len(full) == 1 + 19 * 6
    longer = plan(latents, per_step=6)  # 39 steps: 3 frames a step, a subset of the 6 drawn before
    assert len(longer) <= GIF_MAX_FRAMES and len(longer) == 1 + 39 * 3
    assert {key for key, _, _ in longer[: 1 + 19 * 3]} <= {key for key, _, _ in full}
    assert len(plan([torch.full((1, 5), float(i)) for i in range(400)], per_step=6)) == GIF_MAX_FRAMES


# --------------------------------------------------------------------------- logins


def test_a_session_opens_only_for_the_login_that_created_it(tmp_path):
    sessions = service(tmp_path)
    ann = sessions.ensure(None, user="ann")
    list(sessions.chat(ann, "add thick glasses"))
    ann_chat = lines(sessions, ann)
    assert sessions.ensure(ann, user="ann") == ann

    bo = sessions.ensure(ann, user="bo")
    assert bo != ann and lines(sessions, bo)[0].startswith(NOT_YOURS)
    assert "add thick glasses" not in lines(sessions, bo)
    list(sessions.act(bo, "undo", {"steps": 1}, "[undo]"))  # bo's undo is his own
    assert lines(sessions, ann) == ann_chat and len(sessions.agent.session(ann).state.turns) == 1

    again = service(tmp_path)  # after a restart the owner comes back from the store
    assert again.ensure(ann, user="bo") != ann and again.ensure(ann, user="ann") == ann
    assert service(tmp_path).ensure(ann) == ann  # without logins the id is the credential


@pytest.mark.parametrize("user", [None, "ann"])
def test_ensure_gives_a_new_session_for_an_unknown_id(tmp_path, user):
    sessions = service(tmp_path)
    sid = sessions.ensure("0" * 32, user=user)
    assert sid != "0" * 32 and not lines(sessions, sid)[0].startswith(NOT_YOURS)


def test_memory_is_given_back_once_a_sessions_turns_are_answered(tmp_path, monkeypatch):
    """The allocator's freed memory goes back to the system when a session's queue empties (after
    its listeners have their answers, so no turn waits for it)."""
    calls = []
    monkeypatch.setattr("chatedit.memory.release", lambda: calls.append("released"))
    sessions = service(tmp_path)
    sid = sessions.ensure(None)
    for turn, text in enumerate(("add thick glasses", "make them smile a lot"), 1):
        list(sessions.chat(sid, text))
        assert sessions.idle(sid, timeout=30) and len(calls) == turn
