"""The page's side of the workers: ``RayWorkers`` (the ``Editor``'s ``Workers``) and ``RemoteBackend``.

The page keeps the sessions, the chat model and the agent; the backend's models live on the
replicas. ``RayWorkers.walk`` and ``invert`` call the deployment's generator methods through a
streaming ``DeploymentHandle`` and rebuild, from what crosses the wire, the same ``Frame``s,
``EditResult`` and ``Inverted`` the in-process path makes, so the agent, the sessions and the page
do not change. ``RemoteBackend`` answers the rest of the backend contract (a face drawn for
undo, the reading of an uploaded face, intake) with one call each.

Faults end the call, never the page: a replica that dies mid-call, or a cluster that cannot be
reached, is a ``BackendError`` with a plain sentence; the editor then changes nothing, and the next
call goes to a live replica.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch

from chatedit.editor import Inverted, WalkStart
from chatedit.tools.backend import Backend, BackendError, Method
from chatedit.tools.walk import EditResult

from .deploy import APP, WorkerSettings
from .wire import Failed, FrameMessage, Note, Preview, Progress, Started, unpack_image

logger = logging.getLogger(__name__)

WORKER_LOST = "The worker running this stopped before it finished, so nothing was changed. Please try again."
UNREACHABLE = ("The editing workers cannot be reached right now ({why}), so nothing was changed; the page keeps "
               "working and will use them as soon as they are back.")
CLUSTER_GONE = ("The editing workers' Ray cluster stopped answering ({why}), so nothing was changed; your session is "
                "kept. Faces can be edited again once Ray is back and this page has been restarted.")
NOT_STARTED = ("The editing workers could not be reached when this page started ({why}), so faces cannot be drawn "
               "or edited; your sessions are kept. Start Ray (or fix --ray-address) and restart the page.")
CALL_TIMEOUT_S = 300.0  # one call (a draw, a reading) that takes longer has lost its worker
# Ray ends a process whose cluster (its GCS) has been gone this long (default 60 s): the page must
# outlive its cluster, so the wait is made longer than any page runs, and each call looks first
RECONNECT_TIMEOUT_S = str(10 * 365 * 24 * 3600)


@dataclass
class Route:
    """The photo the calls of one editor operation are about, and what the replicas said about it."""

    photo: str | None
    notes: list[str] = field(default_factory=list)


_ROUTE: ContextVar[Route | None] = ContextVar("chatedit_workers_route", default=None)


class RayWorkers:
    """The ``Editor``'s workers on a Ray Serve deployment (``chatedit.workers.replica``)."""

    def __init__(self, handle, method: Method = "field", cluster: str | None = None):
        self.handle = handle  # a DeploymentHandle of the Backend deployment
        self.method = method  # the replicas walk by the method they were deployed with
        self.cluster = cluster  # the cluster's GCS address, looked at before each call (None: not looked at)
        self.last_replica: str | None = None  # the replica that took the latest stream (logs, fault tests)

    # ----------------------------------------------------------------- Workers

    def walk(self, start: WalkStart, attribute: str, target: int | None, change: int | None, method: Method,
             max_steps: int, on_frame=None, on_preview=None) -> EditResult:
        if method != self.method:
            raise ValueError(f"these workers walk by {self.method!r}, not {method!r}")
        frames = []
        result = None
        for message in self._stream("walk", start.photo, start, attribute, target, change, max_steps):
            if isinstance(message, FrameMessage):
                frames.append(message.frame())
                if on_frame is not None:
                    on_frame(frames[-1])
            elif isinstance(message, Preview):
                if on_preview is not None:
                    on_preview(unpack_image(message.image))
            else:
                result = message
        if result is None:  # the stream ended without its result: the replica went away
            raise BackendError(WORKER_LOST)
        chosen = min(result.chosen, len(frames) - 1) if frames else 0
        return dataclasses.replace(result, frames=frames, chosen=chosen)

    def invert(self, image: torch.Tensor, refine_steps: int, on_progress=None) -> Inverted:
        made = None
        for message in self._stream("invert", None, image.detach().float().cpu(), refine_steps):
            if isinstance(message, Progress):
                if on_progress is not None:
                    on_progress(message.step, unpack_image(message.image))
            else:
                made = message
        if made is None:
            raise BackendError(WORKER_LOST)
        return made

    @contextmanager
    def route(self, photo: str | None) -> Iterator[list[str]]:
        route = Route(photo)
        token = _ROUTE.set(route)
        try:
            yield route.notes
        finally:
            _ROUTE.reset(token)

    # ----------------------------------------------------------------- calls

    def call(self, member: str, *args) -> Any:
        """``backend.<member>(*args)`` on a replica (the one holding the routed photo, if any)."""
        route = _ROUTE.get() or Route(None)
        self._check_cluster()
        for attempt in (1, 2):  # a replica found dead before it answered: once more, on another
            try:
                value, notes = self._handle(route.photo).call.remote(member, *args).result(timeout_s=CALL_TIMEOUT_S)
                break
            except Exception as error:
                failure = _failure(error)
                if attempt == 2 or not _lost(failure):
                    raise failure from error
        route.notes.extend(notes)
        if isinstance(value, Failed):
            raise BackendError(value.text)
        return value

    def _check_cluster(self) -> None:
        """A ``BackendError`` now when the cluster itself is gone: a call to it would wait for ever."""
        if self.cluster is None:
            return
        try:
            check_address(self.cluster, timeout_s=2.0)
        except ConnectionError as error:
            logger.error("the Ray cluster at %s is gone: %s", self.cluster, error)
            raise BackendError(CLUSTER_GONE.format(why=f"nothing answers at {self.cluster}")) from error

    def _handle(self, photo: str | None, stream: bool = False):
        options = {"stream": True} if stream else {}
        if photo:
            options["multiplexed_model_id"] = photo
        return self.handle.options(**options) if options else self.handle

    def _stream(self, method: str, photo: str | None, *args) -> Iterator[Any]:
        """The messages of a generator method after its ``Started``; notes go to the route, a ``Failed``
        is raised as ``BackendError``. A stream whose replica dies before it starts is tried once more."""
        route = _ROUTE.get() or Route(None)
        self._check_cluster()
        for attempt in (1, 2):
            started = False
            try:
                for message in getattr(self._handle(photo, stream=True), method).remote(*args):
                    if isinstance(message, Started):
                        started, self.last_replica = True, message.replica
                    elif isinstance(message, Note):
                        route.notes.append(message.text)
                    elif isinstance(message, Failed):
                        raise BackendError(message.text)
                    else:
                        yield message
                return
            except BackendError:
                raise
            except Exception as error:
                failure = _failure(error)
                if started or attempt == 2 or not _lost(failure):
                    logger.warning("%s on %s failed: %s: %s", method, self.last_replica, type(error).__name__, error)
                    raise failure from error


def _lost(failure: Exception) -> bool:
    """Whether a call failed because its replica went away (worth sending once more)."""
    return isinstance(failure, BackendError) and str(failure) == WORKER_LOST


def _failure(error: Exception) -> Exception:
    """What a failed call means for the editor: the replica's own error, or a ``BackendError`` sentence."""
    import ray.exceptions as rx

    if isinstance(error, rx.RayTaskError):  # the replica's code raised: the same error as in-process
        return error.as_instanceof_cause()
    if isinstance(error, (rx.RayError, TimeoutError)):  # the replica died, or stopped answering
        return BackendError(WORKER_LOST)
    return BackendError(UNREACHABLE.format(why=f"{type(error).__name__}: {str(error)[:120]}"))


class RemoteBackend(Backend):
    """The backend contract answered by the replicas: the page holds no models.

    The walk's own members (``step``, ``latent_distance``) are not served: the walk runs on the
    replicas, next to the models."""

    def __init__(self, workers: RayWorkers, about: dict):
        self.workers = workers
        self.name = about["name"]
        self.attributes = tuple(about["attributes"])
        self.resolution = int(about["resolution"])
        self.capabilities = about["capabilities"]
        self.device = torch.device("cpu")

    def intake(self, picture):
        return self.workers.call("intake", picture)

    def sample(self, seed: int) -> torch.Tensor:
        return self.workers.call("sample", seed)

    def encode(self, image: torch.Tensor, refine_steps: int = 0, on_progress=None) -> torch.Tensor:
        return self.workers.call("encode", image.detach().cpu(), refine_steps)

    def generate(self, w: torch.Tensor, on_preview=None) -> torch.Tensor:
        return self.workers.call("generate", w.detach().cpu())

    def predict(self, image: torch.Tensor):
        return self.workers.call("predict", image.detach().cpu())

    def identity(self, image: torch.Tensor) -> torch.Tensor | None:
        return self.workers.call("identity", image.detach().cpu())

    def with_scene(self, w: torch.Tensor, scene: str | None) -> torch.Tensor:
        if not self.capabilities.scenes:
            raise NotImplementedError(f"the {self.name} backend draws no scenes")
        return self.workers.call("with_scene", w.detach().cpu(), scene)

    def step(self, method, attribute, w, direction=1):
        raise NotImplementedError("the walk runs on the workers, next to the models")

    def latent_distance(self, w):
        raise NotImplementedError("the walk runs on the workers, next to the models")


# --------------------------------------------------------------------------- starting


def start(backend: str, backend_options: dict, settings: WorkerSettings, method: Method = "field"):
    """Starts (or, with ``settings.address``, joins) a Ray cluster and runs ``backend`` on it as a Serve
    deployment, unless the cluster already runs one (``serve deploy``); returns its handle."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", RECONNECT_TIMEOUT_S)
    import ray
    from ray import serve

    from .deploy import plain_options
    from .replica import Backend as Deployment

    if settings.address not in (None, "auto"):
        check_address(settings.address)
    if not ray.is_initialized():
        ray.init(address=settings.address, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    if settings.address is not None:
        running = serve.status().applications.get(APP)
        if running is not None and running.status == "RUNNING":
            logger.info("joining the running %s application", APP)
            return serve.get_app_handle(APP)
    serve.start(proxy_location="Disabled")
    app = Deployment.options(**settings.deployment_options()).bind(backend, plain_options(backend_options), method)
    return serve.run(app, name=APP, route_prefix=None)


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Raises ``ConnectionError`` when nothing answers at a cluster's ``HOST:PORT`` (``ray.init`` itself
    would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or address, int(port or 6379)), timeout=timeout_s).close()
    except (OSError, ValueError) as error:
        raise ConnectionError(f"nothing answers at {address}: {error}") from error


def connect(handle, method: Method = "field") -> tuple[RemoteBackend, RayWorkers]:
    """The page's backend and workers over a running deployment's handle."""
    import ray

    workers = RayWorkers(handle, method, cluster=ray.get_runtime_context().gcs_address)
    about = handle.about.remote().result(timeout_s=CALL_TIMEOUT_S)
    return RemoteBackend(workers, about), workers


class Unreachable:
    """Workers that could not be reached when the page started: every call says so in a sentence."""

    def __init__(self, why: str):
        self.sentence = NOT_STARTED.format(why=why)
        self.last_replica = None

    def walk(self, *args, **kwargs) -> EditResult:
        raise BackendError(self.sentence)

    def invert(self, *args, **kwargs) -> Inverted:
        raise BackendError(self.sentence)

    def call(self, member: str, *args) -> Any:
        raise BackendError(self.sentence)

    @contextmanager
    def route(self, photo: str | None) -> Iterator[list[str]]:
        yield []


def standing_in(spec, why: str) -> tuple[RemoteBackend, Unreachable]:
    """The page's backend and workers when no cluster could be reached: what the registry declares
    (name, vocabulary, capabilities) and a sentence for every call."""
    from chatedit.attributes import attribute_names

    cls = spec.backend_class()
    about = {"name": spec.name, "attributes": attribute_names(), "capabilities": cls.capabilities,
             "resolution": vars(cls).get("resolution", 512)}  # a size is declared on the class or only once loaded
    workers = Unreachable(why)
    return RemoteBackend(workers, about), workers


def build_agent(backend: str = "builtin", llm="rules", method: str = "field", settings: WorkerSettings | None = None,
                handle=None, **options):
    """``chatedit.agent.build_agent`` with the backend on Ray Serve replicas (``handle``: an already
    running deployment; else one is started as ``settings`` say)."""
    from chatedit.agent import Agent
    from chatedit.editor import Editor
    from chatedit.llms import LLMSettings, make_chat_model
    from chatedit.tools import registry

    spec = registry.get(backend)
    given = spec.make_options(**{k: v for k, v in options.items() if v is not None})  # refused here, by name
    if method not in spec.capabilities().methods:
        raise ValueError(f"--backend {backend} edits by {', '.join(spec.capabilities().methods)}, not {method!r}")
    settings_llm = llm if isinstance(llm, LLMSettings) else LLMSettings(llm)
    chat_model = make_chat_model(settings_llm)
    fallback = make_chat_model(settings_llm.fallback) if settings_llm.fallback else None
    settings = settings or WorkerSettings()
    if handle is None and settings.address is None:  # the replicas run here: refuse what cannot load, now
        why = spec.check(given)
        if why is not None:
            raise FileNotFoundError(f"--backend {backend}: {why}")
    try:
        if handle is None:
            handle = start(backend, dataclasses.asdict(given), settings, method)
        remote, workers = connect(handle, method)
    except ConnectionError as error:  # no cluster there: the page starts, and says so on every call
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            " (Ray 2.59 and later start clusters with token authentication: run this page with RAY_AUTH_MODE=token, "
            "or start the cluster with RAY_AUTH_MODE=disabled)")
        logger.error("Ray cannot be reached at %s: %s%s", settings.address or "a local cluster", error, hint)
        remote, workers = standing_in(spec, f"Ray at {settings.address or 'this machine'}: {str(error)[:120]}")
    return Agent(Editor(remote, method=method, workers=workers), chat_model, fallback=fallback)


__all__ = ["CLUSTER_GONE", "NOT_STARTED", "UNREACHABLE", "WORKER_LOST", "RayWorkers", "RemoteBackend", "Unreachable", "build_agent",
           "connect", "standing_in", "start"]
