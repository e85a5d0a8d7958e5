"""The deployment: one backend per replica, its models loaded once; walks and inversions run here.

``BackendReplica`` is a Ray Serve deployment class. Its generator methods (``walk``, ``invert``)
run the same code the page runs in-process (``chatedit.editor.InProcess``) in a worker thread and
stream what it shows: a ``Started`` naming the replica, then frames (``wire``), then the result.
``call`` serves the rest of the backend contract (drawing, reading, identity, intake) one value at a time.

Per-photo state follows the photo. Calls about an uploaded photo's face carry its key as Serve's
multiplexed model id, so Serve sends them to a replica that holds that photo (the one whose
inversion made it); ``_photo`` is the multiplexed loader. A replica asked about a photo it never
held (the one that did is gone, or dropped it) says so with a ``Note`` ("re-preparing your photo"),
and its backend redoes what it keeps for that photo from the saved photo as it does in-process
(diffusion's inversion and StyleGAN2's Pivotal Tuning from their ``photo_dir``; the built-in
backend keeps nothing per photo). No session state lives here: every call brings what it needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray
import torch
from ray import serve

from chatedit.editor import InProcess, Inverted, WalkStart, photo_key
from chatedit.tools import registry
from chatedit.tools.backend import BackendError, Method

from .deploy import DEPLOYMENT
from .wire import (
    Failed,
    FrameMessage,
    Note,
    Preview,
    Progress,
    Started,
    pack_image,
    to_cpu,
)

logger = logging.getLogger(__name__)

PHOTOS_PER_REPLICA = 32  # photos whose state one replica keeps routed to it (Serve's LRU of multiplexed ids)
REPREPARING = "(Re-preparing your photo: the worker that held it stopped, so this turn took a little longer.)"
CONTRACT = ("intake", "sample", "encode", "generate", "predict", "identity", "with_scene")  # what ``call`` serves
_DONE = object()


@dataclasses.dataclass
class Photo:
    """A photo this replica serves: ``reprepared`` until the person has been told it was prepared again."""

    key: str
    reprepared: bool


def load_backend(backend: str, options: dict):
    """The registered backend from options as sent (paths may come as text, from a YAML config)."""
    spec = registry.get(backend)
    given = spec.make_options(**options)
    paths = {f.name: Path(getattr(given, f.name)) for f in dataclasses.fields(given)
             if f.metadata.get("type") is Path and isinstance(getattr(given, f.name), str)}
    return spec.load(dataclasses.replace(given, **paths))


class BackendReplica:
    def __init__(self, backend: str, options: dict | None = None, method: Method = "field"):
        self.backend = load_backend(backend, options or {})
        self.method = method
        self.made: set[str] = set()  # photos inverted here, not yet handed to the multiplexed loader
        self.name = ray.get_runtime_context().get_actor_name() or "local"
        logger.info("replica %s holds the %s backend on %s", self.name, backend, self.backend.device)

    def about(self) -> dict[str, Any]:
        """What the page needs to stand in for the backend: its name, vocabulary, size and capabilities."""
        b = self.backend
        return {"name": b.name, "attributes": tuple(b.attributes), "resolution": b.resolution,
                "capabilities": b.capabilities, "replica": self.name}

    # ----------------------------------------------------------------- per-photo state

    @serve.multiplexed(max_num_models_per_replica=PHOTOS_PER_REPLICA)
    async def _photo(self, key: str) -> Photo:
        made_here = key in self.made
        self.made.discard(key)
        if not made_here:
            logger.info("replica %s re-prepares photo %s", self.name, key)
        return Photo(key, reprepared=not made_here)

    async def _notes(self) -> list[str]:
        """Takes up the photo this request is about (its multiplexed id); the sentences to show for it."""
        key = serve.get_multiplexed_model_id()
        if not key:
            return []
        photo = await self._photo(key)
        if photo.reprepared:
            photo.reprepared = False
            return [REPREPARING]
        return []

    # ----------------------------------------------------------------- the contract, one value at a time

    async def call(self, member: str, *args) -> tuple[Any, list[str]]:
        """``backend.<member>(*args)`` on this replica: (its value on the CPU, or a ``Failed``; notes)."""
        if member not in CONTRACT:
            raise ValueError(f"a replica serves {', '.join(CONTRACT)}, not {member!r}")
        notes = await self._notes()

        def run():  # no gradients but in an inversion's own refinement
            with torch.no_grad() if member != "encode" else nullcontext():
                return to_cpu(getattr(self.backend, member)(*args))
        try:
            return await asyncio.to_thread(run), notes
        except BackendError as error:
            return Failed(str(error)), notes

    # ----------------------------------------------------------------- streams

    async def walk(self, start: WalkStart, attribute: str, target: int | None, change: int | None,
                   max_steps: int) -> AsyncIterator[Any]:
        """An edit's walk: ``Started``, notes, ``FrameMessage``/``Preview`` as it goes, then the
        ``EditResult`` (its frames left out: they came one by one) or a ``Failed``."""
        yield Started(self.name)
        for note in await self._notes():
            yield Note(note)

        def work(emit: Callable[[Any], None]):
            result = InProcess(self.backend).walk(
                start, attribute, target, change, self.method, max_steps,
                on_frame=lambda frame: emit(FrameMessage.of(frame)),
                on_preview=lambda image: emit(Preview(pack_image(image))))
            return to_cpu(dataclasses.replace(result, frames=[]))
        async for message in _streamed(work):
            yield message

    async def invert(self, image: torch.Tensor, refine_steps: int) -> AsyncIterator[Any]:
        """An upload's inversion: ``Started``, ``Progress`` images, then the ``Inverted`` face (or ``Failed``).
        The photo's state stays here, and later calls about it are routed here."""
        yield Started(self.name)

        def work(emit: Callable[[Any], None]):
            made = InProcess(self.backend).invert(
                image, refine_steps, on_progress=lambda step, shown: emit(Progress(step, pack_image(shown))))
            return to_cpu(made)
        async for message in _streamed(work):
            if isinstance(message, Inverted):  # held here, before the page has it: Serve routes its calls here
                key = photo_key(message.latent)
                self.made.add(key)
                await self._photo(key)
            yield message


async def _streamed(work: Callable[[Callable[[Any], None]], Any]) -> AsyncIterator[Any]:
    """Runs ``work(emit)`` in a thread and yields what it emits as it comes, then what it returns
    (a ``Failed`` when it raised ``BackendError``; other errors are raised here)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def emit(message: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, message)

    def run() -> None:
        outcome: Any = _DONE
        try:
            outcome = work(emit)
        except BackendError as error:
            outcome = Failed(str(error))
        except Exception as error:  # raised to the caller below, on the event loop
            outcome = error
        finally:
            if outcome is not _DONE:
                emit(outcome)
            emit(_DONE)
    threading.Thread(target=run, name="chatedit-walk", daemon=True).start()
    while (message := await queue.get()) is not _DONE:
        if isinstance(message, BaseException):
            raise message
        yield message


Backend = serve.deployment(name=DEPLOYMENT)(BackendReplica)


def app(args: dict) -> serve.Application:
    """The application ``serve deploy`` builds from a config's ``args`` (``chatedit deploy`` writes them)."""
    return Backend.bind(args["backend"], args.get("options") or {}, args.get("method", "field"))


__all__ = ["PHOTOS_PER_REPLICA", "REPREPARING", "Backend", "BackendReplica", "app", "load_backend"]
