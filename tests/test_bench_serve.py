"""``chatedit bench serve``: what its checks call a half-applied or lost turn, and a small real run."""

from __future__ import annotations

import pytest

from chatedit import bench_serve
from chatedit.bench_serve import StoredSession, Tab, User, half_applied, lost

pytest.importorskip("gradio")

SID = "a" * 32
KEYS = {"errors", "leaks", "half_applied", "lost_turns", "integrity_ok", "latency_growth", "bytes_per_edit",
        "rss_growth_mb", "p50_s", "p95_s", "first_frame_p50_s", "frame_gap_p50_ms", "users", "turns"}


def stored(chat, turns, degrees, last_turn_degrees) -> StoredSession:
    return StoredSession(SID, tuple(chat), tuple(turns), last_turn_degrees, degrees)


def test_a_whole_turn_is_not_half_applied():
    chat = [("assistant", "Here is a new face."), ("assistant", None), ("user", "make him older"), ("assistant", None),
            ("assistant", "age 2 → 4"), ("user", "[uploaded me.png]"), ("user", None),  # the photo as sent
            ("assistant", "Got it."), ("assistant", None)]
    assert half_applied(stored(chat, ["make him older", "[uploaded a photo]"], {"age": 1}, {"age": 1})) == set()


def test_the_issues_disconnect_is_half_applied_three_ways():
    # "make him older" closed mid-edit: no reply, not in the turn log, and the face moved without a turn
    chat = [("assistant", "Here is a new face."), ("user", "make him older"), ("user", "add glasses"),
            ("assistant", None), ("assistant", "eyeglasses 0 → 2")]
    found = half_applied(stored(chat, ["add glasses"], {"age": 5, "eyeglasses": 2}, {"age": 3, "eyeglasses": 2}))
    assert {f[1] for f in found} == {"no reply", "chat and turn log differ from request",
                                     "face differs from the last logged turn"}


def test_a_turn_whose_reply_a_client_saw_must_be_in_the_store():
    user = User(0, Tab("http://127.0.0.1:1/", page=None))
    user.tab.session = SID
    user.lines = ["make him older", "[undo]", "add glasses"]
    chat = [("user", "make him older"), ("assistant", "age 2 → 4"), ("user", "add glasses"), ("assistant", "ok")]
    assert lost([user], {SID: stored(chat, [], None, None)}) == {(0, 1, "[undo]")}
    assert lost([user], {}) == {(0, k, line) for k, line in enumerate(user.lines)}
    user.tab.close()


def test_the_page_is_read_by_component_not_by_position():
    components = [{"id": 1, "type": "browserstate", "props": {}}, {"id": 2, "type": "chatbot", "props": {"elem_id": "chat"}},
                  {"id": 3, "type": "image", "props": {"elem_id": "preview"}},
                  {"id": 4, "type": "slider", "props": {"elem_id": "slider-age"}},
                  {"id": 5, "type": "markdown", "props": {"elem_id": "status"}}]
    dependencies = [{"api_name": "start", "outputs": [5, 4, 3, 2, 1]}, {"api_name": False, "outputs": [2]},
                    {"api_name": "send", "outputs": [1, 2, 3, 4, 5]}]
    page = bench_serve.Page.from_config({"components": components, "dependencies": dependencies})
    assert page.sliders == ("age",)
    assert page.outputs["start"] == {"slider:age": 1, "preview": 2, "chat": 3, "session": 4}
    assert page.outputs["send"]["session"] == 0 and False not in page.outputs
    with pytest.raises(ValueError, match="lacks"):
        bench_serve.Page.from_config({"components": components, "dependencies": dependencies[1:]})


@pytest.mark.slow
def test_two_users_over_http_keep_their_own_sessions_through_a_disconnect_and_a_kill():
    result = bench_serve.run(users=2, turns=3, faults=1, time_limit_s=600)
    assert KEYS <= set(result)
    assert result["errors"] == 0, result["error_examples"]
    assert result["leaks"] == 0, result["leak_examples"]
    assert result["turns"] == 6 and result["edits"] == 6 and result["kills"] == result["disconnects"] == 1
    assert 0 < result["first_frame_p50_s"] < result["p95_s"]  # frames stream before the turn ends
    assert 0 < result["frame_gap_p50_ms"] <= result["frame_gap_max_ms"]  # an edit streams several frames
    assert result["rss_peak_mb"] >= result["rss_warm_mb"] > 0 and result["bytes_per_edit"] > 0
    assert result["integrity_ok"], result["integrity_problems"] + result["store_errors"]
    assert "| cross-session leaks | 0 |" in bench_serve.markdown(result)
