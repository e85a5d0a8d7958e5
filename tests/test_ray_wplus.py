"""The W+ adapter backend on a Ray Serve replica, as ``chatedit serve --backend wplus --workers ray`` runs it.

The replica loads the same tiny random files in the published layouts as ``test_wplus_backend`` (from
their paths, through the registry, as a deployment started from the CLI's flags would); the page's
session service uploads a photo, asks for a scene and an edit, and undoes, all through the replica.
Random weights prove the plumbing across processes, not the quality of an edit.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("CI") == "true":  # CI installs the extra: a missing ray there is a failure, not a skip
    import ray
else:
    ray = pytest.importorskip("ray", reason="Ray tests need the ray extra: pip install -e '.[ray]'")

from chatedit.sessions import SessionService
from chatedit.store import SessionStore
from chatedit.tools.wplus.backend import WPlusBackend
from chatedit.workers.client import build_agent as build_ray_agent
from chatedit.workers.deploy import WorkerSettings

from diffusion_fixtures import build_pipeline
from test_stylegan2_backend import portrait  # noqa: F401  (a fixture)
from wplus_fixtures import ROWS, build_wplus_files

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SIZE = 64


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("wplus-ray")
    model = build_pipeline(root / "sd", resolution=SIZE)
    return {"model": str(model), **build_wplus_files(root, model)}


@pytest.fixture(scope="module")
def remote(files):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        settings = WorkerSettings(replicas=1, cpus_per_replica=1)
        yield build_ray_agent("wplus", "rules", settings=settings, wplus_adapter=files["adapter"], e4e=files["e4e"],
                              weights=files["weights"], model=files["model"], steps=2, device="cpu")
    finally:
        serve.shutdown()
        ray.shutdown()


def test_a_photo_is_inverted_put_in_a_scene_edited_and_undone_on_the_replica(remote, files, portrait, tmp_path):
    local = WPlusBackend.load(files["adapter"], files["e4e"], files["weights"], model=files["model"], steps=2,
                              device="cpu")
    sessions = SessionService(remote, SessionStore(tmp_path / "data"), "wplus")
    try:
        sid = sessions.ensure(None)
        photo = tmp_path / "portrait.png"
        portrait[0].save(photo)
        list(sessions.upload(sid, photo))  # found, aligned and inverted by e4e on the replica
        state = remote.session(sid).state
        assert state.current.action == "uploaded photo"
        uploaded = state.current.latent.clone()
        assert uploaded.shape == (1, ROWS + local.scene_rows, local.style_dim)
        assert local.scene(uploaded) == local.prompt

        more = state.current.degrees["smiling"] < 3
        list(sessions.chat(sid, f"Put her on a beach and make her smile a little {'more' if more else 'less'}"))
        state = remote.session(sid).state
        assert local.scene(state.current.latent) == "on a beach"
        assert [e.action for e in state.entries][1] == "scene: on a beach"
        # the smile was walked on the replica too; with random weights it may read the same at the end
        assert all(torch.equal(e.latent[0, ROWS:], state.entries[1].latent[0, ROWS:]) for e in state.entries[1:])
        said = sessions.chat_log(sid)[-1].text
        assert "on a beach" in said and "smil" in said and "Traceback" not in said
        # the replica draws what this process draws from the same files and the same code
        drawn = remote.editor.backend.generate(state.current.latent)
        assert torch.allclose(drawn, local.generate(state.current.latent), atol=1e-3)

        list(sessions.act(sid, "undo", {"steps": len(state.entries) - 1}, "[undo]"))
        state = remote.session(sid).state
        assert torch.equal(state.current.latent, uploaded) and local.scene(state.current.latent) == local.prompt
        assert sessions.face_png(sid, display=True).is_file() and sessions.edit_path_gif(sid).is_file()
    finally:
        sessions.store.close()
