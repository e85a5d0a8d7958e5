"""The built-in backend on Ray Serve workers (``chatedit serve --workers ray``) behaves as in-process.

One local Ray cluster for the module (``ray.init(num_cpus=2)``, no GPU) runs the backend as a Serve
deployment of two replicas; the page's agent reaches it through a DeploymentHandle. The faults are
real: a replica is killed with ``ray.kill`` while it walks, or after it inverted a photo.
"""

import json
import os
import threading
import time
from pathlib import Path

import pytest

if os.environ.get("CI") == "true":  # CI installs the extra: a missing ray there is a failure, not a skip
    import ray
else:
    ray = pytest.importorskip("ray", reason="Ray tests need the ray extra: pip install -e '.[ray]'")

from chatedit.agent import build_agent
from chatedit.replay import load_script, run_script
from chatedit.workers.client import NOT_STARTED, WORKER_LOST
from chatedit.workers.client import build_agent as build_ray_agent
from chatedit.workers.deploy import WorkerSettings
from chatedit.workers.replica import REPREPARING

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DIALOGS = Path(__file__).parent / "dialogs"
SCRIPTS = ["07_undo_redo_reset.yaml", "14_child_beard.yaml"]  # history moves; an edit with a second walk
REPLICAS = 2


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # half a CPU each: a killed replica's successor can start while the other one works
        settings = WorkerSettings(replicas=REPLICAS, cpus_per_replica=0.5)
        yield build_ray_agent("builtin", "rules", settings=settings)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def local():
    return build_agent("builtin", "rules")


def wait_for_replicas(count: int = REPLICAS, timeout_s: float = 60.0) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        deployment = serve.status().applications["chatedit"].deployments["Backend"]
        if deployment.status == "HEALTHY" and deployment.replica_states.get("RUNNING", 0) == count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the deployment did not get back to {count} running replicas in {timeout_s} s")


def kill(replica: str) -> None:
    ray.kill(ray.get_actor(replica, namespace="serve"), no_restart=True)


def without_timings(transcript: dict) -> dict:
    return {**transcript, "turns": [{k: v for k, v in turn.items() if k != "ms"} for turn in transcript["turns"]]}


@pytest.fixture
def one_thread():
    """This process computes with one thread, as each replica does (Ray gives a replica of half a CPU
    one): the same sums in the same order, so identities agree to the last digit a transcript keeps."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", SCRIPTS)
def test_dialog_scripts_through_the_workers_give_the_in_process_transcripts(cluster, local, one_thread, name,
                                                                            tmp_path):
    script = load_script(DIALOGS / name)
    here = run_script(script, local, tmp_path / "local")
    there = run_script(script, cluster, tmp_path / "ray")
    assert all(turn["passed"] for turn in there["turns"]), json.dumps(there, indent=1)
    assert without_timings(there) == without_timings(here)


def test_four_concurrent_sessions_on_two_replicas_keep_their_own_state(cluster, local):
    requests = ["add glasses", "make them smile more"]
    seeds = [11, 12, 13, 14]
    expected = {}
    for seed in seeds:  # one after another, in this process
        local.open(f"alone-{seed}", seed=seed)
        for text in requests:
            local.respond(f"alone-{seed}", text)
        state = local.session(f"alone-{seed}").state
        expected[seed] = ([e.action for e in state.entries], state.current.degrees)
        local.close(f"alone-{seed}")

    replicas, errors = set(), []
    together = threading.Barrier(len(seeds), timeout=60)  # the walks overlap: two per replica at most
    wait_for_replicas()

    def talk(seed: int) -> None:
        try:
            cluster.open(f"together-{seed}", seed=seed)
            together.wait()
            for text in requests:
                cluster.respond(f"together-{seed}", text)
                replicas.add(cluster.editor.workers.last_replica)
        except Exception as error:  # pragma: no cover - shown by the assertion below
            errors.append(error)
    threads = [threading.Thread(target=talk, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for seed in seeds:
        state = cluster.session(f"together-{seed}").state
        assert ([e.action for e in state.entries], state.current.degrees) == expected[seed], seed
        cluster.close(f"together-{seed}")
    # the walks ran on the replicas; which of the two each took is Serve's routing (the page runs two
    # edits at once, and one replica takes two), so it is not asserted here
    assert replicas and all(r.startswith("SERVE_REPLICA::chatedit#Backend#") for r in replicas)


def test_an_uploaded_photo_is_edited_where_it_was_prepared(cluster):
    workers = cluster.editor.workers
    photo = cluster.editor.backend.generate(cluster.editor.backend.sample(21))[0]
    session, _ = cluster.open("photo-kept", image=photo)
    inverted_on, before = workers.last_replica, dict(session.state.current.degrees)
    time.sleep(1)  # Serve's routers learn which replica holds a photo within a fraction of a second
    for text in ("add glasses", "make them smile more"):
        reply = cluster.respond(session.id, text)
        assert workers.last_replica == inverted_on  # routed by the photo's key to the replica holding it
        assert REPREPARING not in reply.text
    assert reply.degrees["eyeglasses"] > before["eyeglasses"]
    cluster.close(session.id)


def test_the_page_s_session_service_uploads_edits_and_draws_its_files_through_the_workers(cluster, tmp_path):
    from chatedit.images import to_pil
    from chatedit.sessions import SessionService
    from chatedit.store import SessionStore

    sessions = SessionService(cluster, SessionStore(tmp_path / "data"), "builtin")
    try:
        sid = sessions.ensure(None)
        photo = tmp_path / "face.png"
        to_pil(cluster.editor.backend.generate(cluster.editor.backend.sample(55))[0]).save(photo)
        list(sessions.upload(sid, photo))  # intake, inversion and reading, each on a replica
        state = cluster.session(sid).state
        assert state.current.action == "uploaded photo"
        list(sessions.act(sid, "edit_attribute", {"attribute": "smiling", "target": 0}, "[slider] Smile → 0"))
        assert sessions.degrees(sid)["smiling"] == 0
        assert sessions.edit_path_gif(sid).is_file() and sessions.face_png(sid, display=True).is_file()
    finally:
        sessions.store.close()


def test_a_replica_killed_mid_edit_leaves_the_session_unchanged_and_the_next_turn_works(cluster):
    wait_for_replicas()
    workers = cluster.editor.workers
    session, _ = cluster.open("killed", seed=5)
    before = (len(session.state.entries), session.state.index, dict(session.state.current.degrees))
    killed = []
    # the replica is killed once the walk's first frame has reached the page
    from chatedit.agent import FrameEvent
    events = []
    for event in cluster.chat(session.id, "make them much older"):
        events.append(event)
        if isinstance(event, FrameEvent) and not killed:
            killed.append(workers.last_replica)
            kill(workers.last_replica)
    reply = events[-1]
    assert killed and WORKER_LOST in reply.text
    assert (len(session.state.entries), session.state.index, dict(session.state.current.degrees)) == before

    reply = cluster.respond(session.id, "make them much older")
    assert reply.degrees["age"] > before[2]["age"]
    assert workers.last_replica != killed[0]
    cluster.close(session.id)


def test_a_photo_whose_replica_died_is_prepared_again_and_edited(cluster):
    wait_for_replicas()
    workers = cluster.editor.workers
    photo = cluster.editor.backend.generate(cluster.editor.backend.sample(34))[0]
    session, _ = cluster.open("photo-lost", image=photo)
    kill(workers.last_replica)
    before = dict(session.state.current.degrees)
    reply = cluster.respond(session.id, "add glasses")
    assert reply.text.startswith(REPREPARING)
    assert reply.degrees["eyeglasses"] > before["eyeglasses"]
    reply = cluster.respond(session.id, "make them smile more")  # prepared now: said once only
    assert REPREPARING not in reply.text
    cluster.close(session.id)


def test_bench_serve_runs_pages_whose_backend_is_the_clusters_deployment(cluster):
    from chatedit import bench_serve

    result = bench_serve.run(users=1, turns=3, faults=0, workers="ray", replicas=REPLICAS, time_limit_s=240)
    assert (result["errors"], result["leaks"], result["half_applied"], result["lost_turns"]) == (0, 0, 0, 0), \
        result["error_examples"] + result["leak_examples"]
    assert result["workers"] == "ray (2 replicas)" and result["replicas_rss_mb"] > 100
    assert result["turns"] == 3 and result["frame_gap_p50_ms"] is not None
    assert "the backend on ray (2 replicas)" in bench_serve.markdown(result)
    assert ray.is_initialized()  # the cluster it was given is left running
    wait_for_replicas()


def test_a_cluster_that_cannot_be_reached_leaves_the_page_up_and_says_so():
    agent = build_ray_agent("builtin", "rules", settings=WorkerSettings(address="127.0.0.1:1"))
    session, opened = agent.open("no-ray")
    assert opened.image is None and opened.text.startswith(NOT_STARTED.split("(")[0]) and "127.0.0.1:1" in opened.text
    reply = agent.respond(session.id, "make them smile")
    assert reply.image is None and not session.state.has_face


def test_deploy_writes_a_serve_config_that_ray_accepts(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from chatedit.cli import main
    from chatedit.workers.replica import app

    out = tmp_path / "serve.yaml"
    assert main(["deploy", "--backend", "builtin", "--device", "cpu", "--min-replicas", "1", "--max-replicas", "4",
                 "--gpus-per-replica", "0.5", "--out", str(out)]) == 0
    config = ServeDeploySchema.model_validate(yaml.safe_load(out.read_text()))
    application = config.applications[0]
    assert application.import_path == "chatedit.workers.replica:app"
    deployment = application.deployments[0]
    assert deployment.autoscaling_config["max_replicas"] == 4 and deployment.ray_actor_options.num_gpus == 0.5
    assert app(application.args) is not None  # what `serve deploy` builds from the file


@pytest.mark.parametrize("flags, problem", [
    ({"replicas": 2, "max_replicas": 3}, "not both"),
    ({"min_replicas": 3, "max_replicas": 2}, "--min-replicas <= --max-replicas"),
    ({"replicas": 0}, "at least 1"),
    ({"gpus_per_replica": -1}, "negative"),
])
def test_worker_settings_refuse_what_cannot_run(flags, problem):
    with pytest.raises(ValueError, match=problem):
        WorkerSettings.from_flags(**flags)


def test_worker_flags_without_workers_are_refused_by_name(capsys):
    from chatedit.cli import main

    assert main(["serve", "--replicas", "2", "--gpus-per-replica", "0.5"]) == 1
    assert "--replicas, --gpus-per-replica need --workers ray" in capsys.readouterr().err


class Recorder:
    def __init__(self):
        self.calls = []

    def call(self, member, *args):
        self.calls.append((member, *args))
        return "the replica's answer"


@pytest.mark.parametrize("scenes", [True, False])
def test_a_scene_change_goes_to_a_replica_only_on_a_backend_that_draws_scenes(scenes):
    import torch

    from chatedit.tools.backend import Capabilities
    from chatedit.workers.client import RemoteBackend

    workers = Recorder()
    remote = RemoteBackend(workers, {"name": "wplus", "attributes": ["smiling"], "resolution": 64,
                                     "capabilities": Capabilities(scenes=scenes)})
    w = torch.zeros(1, 3, 4)
    if scenes:
        assert remote.with_scene(w, "on a beach") == "the replica's answer"
        (member, sent, scene), = workers.calls
        assert (member, scene) == ("with_scene", "on a beach") and torch.equal(sent, w)
    else:
        with pytest.raises(NotImplementedError, match="draws no scenes"):
            remote.with_scene(w, "on a beach")
        assert workers.calls == []


def test_a_cluster_gone_while_the_page_runs_ends_the_call_at_once_with_a_sentence():
    import socket

    from chatedit.tools.backend import BackendError
    from chatedit.workers.client import CLUSTER_GONE, RayWorkers

    class Handle:  # a call through it would wait for a cluster that is not there
        def options(self, **kwargs):
            raise AssertionError("no call may be sent to a cluster that is gone")

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    workers = RayWorkers(Handle(), cluster=address)
    started = time.monotonic()
    with pytest.raises(BackendError) as raised:
        workers.call("generate", None)
    with pytest.raises(BackendError):
        list(workers._stream("walk", None))
    assert str(raised.value) == CLUSTER_GONE.format(why=f"nothing answers at {address}")
    assert time.monotonic() - started < 5
