"""Sessions on disk: everything a session needs comes back, old ones go, bad ids never touch a path."""

from __future__ import annotations

import time

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from chatedit.state import DialogState, Entry, Turn
from chatedit.store import SavedSession, SessionStore

SID = "0123456789abcdef0123456789abcdef"


def a_state() -> DialogState:
    state = DialogState(seed=5)
    degrees = {"bangs": 0, "eyeglasses": 0, "beard": 0, "smiling": 1, "age": 2}
    state.push(Entry(torch.randn(1, 64), degrees, "start", 0))
    state.push(Entry(torch.randn(1, 64), {**degrees, "smiling": 3}, "smiling 1→3", 0))
    state.move(-1)
    state.focus, state.last_change = "smiling", 2
    state.turns.append(Turn("smile more", [{"name": "edit_attribute", "args": {"attribute": "smiling"}, "ok": True}],
                            "They now have a broad smile.", {**degrees, "smiling": 3}))
    return state


def test_a_saved_session_comes_back_whole(tmp_path):
    store = SessionStore(tmp_path)
    state = a_state()
    memory = [HumanMessage("smile more"),
              AIMessage("", tool_calls=[{"name": "edit_attribute", "args": {"attribute": "smiling", "change": 1},
                                         "id": "c1"}]),
              ToolMessage("They now smile.", tool_call_id="c1", name="edit_attribute"), AIMessage("Done.")]
    image = store.save_image(SID, torch.rand(3, 16, 16), "chat-0001")
    chat = [{"role": "user", "text": "smile more", "image": None},
            {"role": "assistant", "text": None, "image": store.relative(image)}]
    store.save(SavedSession(SID, "builtin", state, memory, chat))
    store.close()

    again = SessionStore(tmp_path).load(SID)  # a new process would open the same files
    assert again.state.to_json() == state.to_json()
    assert again.state.index == 0 and again.state.can_redo() == 1
    assert [type(m) for m in again.memory] == [type(m) for m in memory]
    assert again.memory[1].tool_calls[0]["args"] == {"attribute": "smiling", "change": 1}
    assert again.chat == chat and again.backend == "builtin"
    assert SessionStore(tmp_path).absolute(chat[1]["image"]) == image.resolve()


def test_saving_again_updates_the_row_and_keeps_its_creation_time(tmp_path):
    store = SessionStore(tmp_path)
    saved = SavedSession(SID, "builtin", a_state(), [])
    store.save(saved)
    created = saved.created
    saved.chat.append({"role": "user", "text": "hi", "image": None})
    store.save(saved)
    again = store.load(SID)
    assert again.created == created and again.chat[-1]["text"] == "hi" and store.ids() == [SID]


def test_prune_removes_old_sessions_and_keeps_the_most_recent(tmp_path):
    store = SessionStore(tmp_path, max_age_days=1, max_sessions=2)
    ids = [f"{i:032x}" for i in range(4)]
    for sid in ids:
        store.save(SavedSession(sid, "builtin", a_state(), []))
        store.save_image(sid, torch.rand(3, 8, 8), "current")
        time.sleep(0.01)
    removed = store.prune()
    assert sorted(removed) == ids[:2] and store.ids() == ids[:1:-1]
    assert not (store.images_dir / ids[0]).exists() and (store.images_dir / ids[3]).exists()
    assert set(store.prune(now=time.time() + 2 * 86400)) == set(ids[2:])
    assert store.ids() == []


@pytest.mark.parametrize("bad", ["../../etc", "ABC", "", "0123456789abcdef0123456789abcde/", None])
def test_bad_session_ids_never_reach_the_disk(tmp_path, bad):
    store = SessionStore(tmp_path)
    assert store.load(bad) is None
    with pytest.raises(ValueError):
        store.save_image(bad, torch.rand(3, 8, 8), "x")
    with pytest.raises(ValueError):
        store.save(SavedSession(bad, "builtin", a_state(), []))


def test_paths_outside_the_data_dir_are_refused(tmp_path):
    store = SessionStore(tmp_path / "data")
    with pytest.raises(ValueError):
        store.absolute("../outside.png")
    with pytest.raises(ValueError):
        store.save_image(SID, torch.rand(3, 8, 8), "../../x")
