"""The session operations behind the agent's tools: edit, undo, redo, reset, new face, describe.

An ``Editor`` holds the (shared, read-only) backend; every call takes the session's own
``DialogState`` and either changes it completely or not at all. Each returns an ``Outcome``:
the sentence the person and the model read, and the face shown afterwards.

The heavy work of a turn, an edit's walk and an upload's inversion, goes through ``Workers``: in
this process, next to the backend's models (``InProcess``, the default), or on Ray Serve replicas
(``chatedit.workers``), which run the same walk next to their own copy of the models and stream its
frames back. Either way the editor gets the same ``EditResult`` and builds the same ``Outcome``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import wraps
from typing import Protocol

import torch

from chatedit.attributes import MAX_DEGREE, attribute_names, most_allowed
from chatedit.feedback import Feedback, load_feedback
from chatedit.state import DialogState, Entry
from chatedit.tools.backend import Backend, BackendError, Method
from chatedit.tools.walk import EditResult, FaceState, Frame, edit

logger = logging.getLogger(__name__)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1]."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-10))


UPLOADED = "uploaded photo"  # the action of a face's first entry when the face came from a photo


def photo_key(latent: torch.Tensor) -> str:
    """The key of an uploaded photo's face: a hash of the code its upload made (the face's first entry).
    Per-photo state a backend keeps (an inversion, a tuned generator) is found on the workers by it."""
    data = latent.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


class EditError(ValueError):
    """A request the editor refuses, with a message meant for the person and the model."""


@dataclass(frozen=True)
class WalkStart:
    """Where an edit's walk starts: small, and owned by the session."""

    latent: torch.Tensor  # the code shown now
    original: torch.Tensor  # the code of the face it started as (the walk keeps its identity)
    photo: str | None = None  # ``photo_key`` of the uploaded photo the face comes from; None for a drawn face


@dataclass(frozen=True)
class Inverted:
    """An uploaded photo as the backend redraws it."""

    latent: torch.Tensor
    image: torch.Tensor  # (3, H, W) in [0, 1]: the photo redrawn from ``latent``
    degrees: dict[str, int]  # as read from ``image``
    fit: float  # PSNR (dB) of ``image`` against the photo


class Workers(Protocol):
    """Where an edit's walk and an upload's inversion run. Both raise ``BackendError`` with a sentence
    for the person when they cannot finish; nothing of the session is touched either way."""

    def walk(self, start: WalkStart, attribute: str, target: int | None, change: int | None, method: Method,
             max_steps: int, on_frame: Callable[[Frame], None] | None,
             on_preview: Callable[[torch.Tensor], None] | None) -> EditResult:
        """The walk of ``tools.walk.edit`` from ``start``, its frames shown as they come."""

    def invert(self, image: torch.Tensor, refine_steps: int,
               on_progress: Callable[[int, torch.Tensor], None] | None) -> Inverted:
        """The photo ``image`` (3, H, W) as a code, redrawn and read."""

    def route(self, photo: str | None) -> AbstractContextManager[list[str]]:
        """Sends the backend calls made inside the block to the workers that hold ``photo``'s state.
        The list gathers sentences for the person about how they were served ("re-preparing your photo")."""


class InProcess:
    """The walk and the inversion run here, next to the backend's models (the default)."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def walk(self, start: WalkStart, attribute: str, target: int | None, change: int | None, method: Method,
             max_steps: int, on_frame=None, on_preview=None) -> EditResult:
        device = self.backend.device
        with torch.no_grad():  # the identity the walk keeps: the face this one started as
            original = self.backend.identity(self.backend.generate(start.original.to(device)))
        face = FaceState(start.latent.to(device), original)
        return edit(self.backend, face, attribute, target=target, change=change, method=method,
                    max_steps=max_steps, on_frame=on_frame, on_preview=on_preview)

    def invert(self, image: torch.Tensor, refine_steps: int, on_progress=None) -> Inverted:
        return invert(self.backend, image, refine_steps, on_progress)

    def route(self, photo: str | None) -> AbstractContextManager[list[str]]:
        return nullcontext([])


def invert(backend: Backend, image: torch.Tensor, refine_steps: int, on_progress=None) -> Inverted:
    """``Workers.invert`` over a backend in this process (the replicas of ``chatedit.workers`` call it too)."""
    progress = {"on_progress": on_progress} if backend.capabilities.streams_inversion else {}
    latent = backend.encode(image[None].to(backend.device), refine_steps=refine_steps, **progress)
    with torch.no_grad():
        drawn = backend.generate(latent)
        degrees = backend.predict(drawn).degrees[0]
    read = {name: int(degrees[i]) for i, name in enumerate(backend.attributes)}
    return Inverted(latent.detach().float().cpu(), drawn[0], read, psnr(drawn[0].cpu(), image.cpu()))


def _routed(method):
    """Runs an ``Editor`` method with the backend calls of its session's face sent to the workers that
    hold that face's photo; what they say about it ("re-preparing your photo") leads the outcome's text."""

    @wraps(method)
    def routed(self: Editor, state: DialogState, *args, **kwargs):
        with self.workers.route(self._photo(state)) as notes:
            outcome = method(self, state, *args, **kwargs)
        if notes and isinstance(outcome, Outcome):  # said in full, not folded into a summary of edits reached
            return Outcome(" ".join([*dict.fromkeys(notes), outcome.text]), outcome.changed, outcome.image,
                           outcome.question)
        return outcome
    return routed


@dataclass(frozen=True)
class Outcome:
    text: str
    changed: bool  # whether the face shown is a different one now
    image: torch.Tensor | None  # (3, H, W) in [0, 1]: the face shown after the call
    question: str | None = None  # a follow-up the assistant now asks (its call is ``state.question``)
    reached: str | None = None  # an edit that landed where asked and moved nothing else: its clause ("have a beard")


class Editor:
    def __init__(self, backend: Backend, method: Method = "field", max_steps: int | None = None,
                 refine_steps: int | None = None, feedback: Feedback | None = None, min_fit_psnr: float | None = None,
                 workers: Workers | None = None):
        """``max_steps``, ``refine_steps`` and ``min_fit_psnr`` default to what the backend declares in its
        ``capabilities`` (walk steps per edit, inversion steps per upload, the worst fit an upload may have).
        ``workers`` run the walks and inversions (default: ``InProcess(backend)``)."""
        capabilities = backend.capabilities
        self.backend = backend
        self.workers = workers or InProcess(backend)
        self.method = method
        self.max_steps = capabilities.max_steps if max_steps is None else max_steps
        self.refine_steps = capabilities.refine_steps if refine_steps is None else refine_steps
        # an upload the backend redraws worse than this (dB) holds no face it can edit
        self.min_fit_psnr = capabilities.min_fit_psnr if min_fit_psnr is None else min_fit_psnr
        self.feedback = feedback or load_feedback()

    # ----------------------------------------------------------------- faces

    @torch.no_grad()
    def read(self, latent: torch.Tensor) -> tuple[torch.Tensor, dict[str, int]]:
        image = self.backend.generate(latent)
        degrees = self.backend.predict(image).degrees[0]
        return image[0], {name: int(degrees[i]) for i, name in enumerate(self.backend.attributes)}

    @torch.no_grad()
    def image(self, state: DialogState) -> torch.Tensor:
        return self.backend.generate(state.current.latent.to(self.backend.device))[0]

    @torch.no_grad()
    def original_image(self, state: DialogState) -> torch.Tensor:
        """The face the current one started as (what ``reset`` returns to)."""
        return self.backend.generate(state.original.latent.to(self.backend.device))[0]

    def _push(self, state: DialogState, latent: torch.Tensor, action: str, face: int) -> torch.Tensor:
        image, degrees = self.read(latent)
        state.push(Entry(latent.detach().float().cpu(), degrees, action, face))
        return image

    def new_face(self, state: DialogState, seed: int | None = None) -> Outcome:
        if seed is None:  # drawn from the session's own seed, so a replayed session gets the same faces
            seed = random.Random(state.seed * 1_000_003 + state.next_face_id()).randrange(1_000_000)
        if not 0 <= seed < 2**31:
            raise EditError(f"seed must be a whole number from 0 to {2**31 - 1}, got {seed}")
        try:
            image = self._push(state, self.backend.sample(seed), f"new face (seed {seed})", state.next_face_id())
        except BackendError as error:  # nothing could be drawn (out of memory, the workers unreachable): said
            return Outcome(str(error), False, None)
        self._forget_dialog(state)
        text = self.feedback.say("new_face.done", seed=seed, describe=self.feedback.describe(state.current.degrees))
        return Outcome(text, True, image)

    def upload(self, state: DialogState, image: torch.Tensor,
               on_progress: Callable[[int, torch.Tensor], None] | None = None) -> Outcome:
        """Starts a new face from an image (3, H, W) in [0, 1] at the backend's resolution.

        ``on_progress(step, image)`` sees the reconstruction (3, H, W) forming while the backend
        inverts the photo (when its ``encode`` streams: ``capabilities.streams_inversion``). Those images are
        only shown: nothing reaches the state until the upload has succeeded, and a photo refused
        up front (not an image, blank) is refused before any of them.
        """
        if image.ndim != 3 or image.shape[0] != 3:
            raise EditError(f"an image must be (3, H, W), got {tuple(image.shape)}")
        if float(image.float().std()) < 0.02:
            raise EditError(self.feedback.say("upload.blank"))
        try:
            made = self.workers.invert(image, self.refine_steps, on_progress)
        except BackendError as error:
            raise EditError(str(error)) from error
        if made.fit < self.min_fit_psnr:  # the model cannot draw it: not a portrait it knows how to edit
            logger.info("upload refused: redrawn at %.1f dB, under %.1f", made.fit, self.min_fit_psnr)
            reason = "upload.no_face" if self.backend.capabilities.photos else "upload.not_drawn"
            raise EditError(self.feedback.say(reason))
        state.push(Entry(made.latent, made.degrees, UPLOADED, state.next_face_id()))
        self._forget_dialog(state)
        return Outcome("Got it. " + self.feedback.describe(state.current.degrees), True, made.image)

    @staticmethod
    def _photo(state: DialogState) -> str | None:
        """The key of the uploaded photo the face shown comes from; None for a drawn face (or none)."""
        if not state.has_face or state.original.action != UPLOADED:
            return None
        return photo_key(state.original.latent)

    @_routed
    def identity_similarity(self, state: DialogState, image: torch.Tensor | None = None,
                            original: torch.Tensor | None = None) -> float | None:
        """How much the face shown is still the face this session's current face started as, in [0, 1];
        None when the backend has no identity model.

        ``image`` / ``original`` (3, H, W): those faces already drawn, so they are not drawn again."""
        image = self.image(state) if image is None else image
        now = self.backend.identity(image[None])
        if now is None:
            return None
        original = self.original_image(state) if original is None else original
        then = self.backend.identity(original[None])
        return float(self.backend.similarity(now, then)[0])

    def describe(self, state: DialogState, attribute: str | None = None) -> Outcome:
        """The face in words; asked about one attribute, that one (which is then the one "add one",
        "a bit more" refer to)."""
        if not state.has_face:
            return Outcome(self.feedback.say("no_face"), False, None)
        state.question = None
        if attribute is not None:
            if attribute not in attribute_names():
                raise EditError(f"unknown attribute {attribute!r}; choose one of {', '.join(attribute_names())}")
            state.focus, state.last_change = attribute, None
            clause = self.feedback.state(attribute, state.current.degrees[attribute])
            return Outcome(self.feedback.say("describe_one", **{"is": clause}), False, None)
        text = self.feedback.describe(state.current.degrees)
        history = self.feedback.since_original(state.original.degrees, state.current.degrees)
        return Outcome(f"{text} {history}" if history else text, False, None)

    # ----------------------------------------------------------------- history

    @_routed
    def undo(self, state: DialogState, steps: int = 1) -> Outcome:
        return self._move(state, -steps, "undo")

    @_routed
    def redo(self, state: DialogState, steps: int = 1) -> Outcome:
        return self._move(state, steps, "redo")

    def _move(self, state: DialogState, steps: int, kind: str) -> Outcome:
        if not state.has_face:
            return Outcome(self.feedback.say("no_face"), False, None)
        before, index = state.current.degrees, state.index
        moved = state.move(steps)
        if moved == 0:
            return Outcome(self.feedback.say(f"{kind}.nothing"), False, None)
        try:
            image = self.image(state)
        except BackendError as error:  # the face cannot be drawn: stay where we were
            state.index = index
            raise EditError(str(error)) from error
        self._forget_dialog(state)
        changes = self.feedback.changes(before, state.current.degrees)
        key = f"{kind}.same" if not changes else f"{kind}.done" if moved == 1 else f"{kind}.done_many"
        return Outcome(self.feedback.say(key, changes=changes, n=moved), True, image)

    @_routed
    def reset(self, state: DialogState) -> Outcome:
        if not state.has_face:
            return Outcome(self.feedback.say("no_face"), False, None)
        original = state.original
        if torch.equal(original.latent, state.current.latent):
            return Outcome(self.feedback.say("reset.nothing"), False, None)
        before = state.current.degrees
        image = self._push(state, original.latent, "reset", original.face)
        self._forget_dialog(state)
        changes = self.feedback.changes(before, state.current.degrees)
        return Outcome(self.feedback.say("reset.done" if changes else "reset.same", changes=changes), True, image)

    @staticmethod
    def _forget_dialog(state: DialogState) -> None:
        state.focus, state.last_change, state.question = None, None, None

    # ----------------------------------------------------------------- the edit

    @_routed
    def edit(self, state: DialogState, attribute: str, target: int | None = None, change: int | None = None,
             on_frame: Callable[[Frame], None] | None = None,
             on_preview: Callable[[torch.Tensor], None] | None = None) -> Outcome:
        """Walks ``attribute`` to ``target`` (or by ``change``) and pushes the result, or leaves the state alone."""
        # 1. check the request before touching anything
        names = attribute_names()
        if attribute not in names:
            raise EditError(f"there is no attribute {attribute!r}; I can edit {', '.join(names)}")
        if (target is None) == (change is None):
            raise EditError(f"give exactly one of target or change (got target={target}, change={change})")
        if target is not None and not 0 <= target <= MAX_DEGREE:
            raise EditError(f"target must be a degree from 0 to {MAX_DEGREE}, got {target}")
        if change is not None and (change == 0 or not -MAX_DEGREE <= change <= MAX_DEGREE):
            raise EditError(f"change must be a non-zero whole number from -{MAX_DEGREE} to {MAX_DEGREE}, got {change}")
        if not state.has_face:
            raise EditError(self.feedback.say("no_face"))
        current = state.current
        now = current.degrees[attribute]
        aim = target if target is not None else min(max(now + change, 0), MAX_DEGREE)
        allowed, because = most_allowed(attribute, current.degrees)
        if aim > max(allowed, now):  # more than this face allows ("a beard for the child")
            state.focus, state.last_change, state.question = attribute, None, None
            noun = self.feedback.attribute(attribute)["noun"]
            return Outcome(self.feedback.say("edit.not_allowed", noun=noun, because=because), False, None)

        # 2. walk, from the face shown now, measuring identity against this face's original
        origin = WalkStart(current.latent, state.original.latent, self._photo(state))
        try:
            result = self.workers.walk(origin, attribute, target, change, self.method, self.max_steps,
                                       on_frame, on_preview)
        except BackendError as error:
            raise EditError(str(error)) from error
        start, reached = result.start_degree, result.degrees[attribute]
        logger.info("edit %s %d→%d (aim %d): %s in %d steps, identity %s", attribute, start, reached,
                    result.target, result.reason or "reached", result.steps, result.identity_similarity)

        # 3. keep the result when it moved the attribute towards the aim; otherwise change nothing
        state.focus = attribute
        progressed = (reached - start) * (result.target - start) > 0
        if result.reason == "already_at_target" or not progressed:
            state.last_change, state.question = None, None
            key = "already" if result.reason == "already_at_target" else "failed"
            return Outcome(self.feedback.edit(key, attribute, start), False, None)
        # a child with a beard: the beard walks off too, and the face shown is where that walk ends
        final, limited = self._keep_allowed(origin, current.degrees, result, attribute, on_frame, on_preview) \
            or (result, None)
        state.push(Entry(final.latent.detach().float().cpu(), dict(final.degrees),
                         f"{attribute} {start}→{reached}", current.face))
        state.last_change = reached - start
        state.edits += 1

        # 4. say what changed, in words of the degree scale, and what could come next
        overshot = (reached - result.target) * (result.target - start) > 0
        key = "reached" if reached == result.target else "overshot" if overshot else "partial"
        sentences = [self.feedback.edit(key, attribute, reached)]
        for other in names:
            if other != attribute and final.degrees[other] != current.degrees[other]:
                if limited is not None and other == limited[0]:
                    sentences.append(self.feedback.edit("limited", other, final.degrees[other], because=limited[1]))
                else:
                    sentences.append(self.feedback.edit("side_effect", other, final.degrees[other]))
        state.question = self._question(state, attribute) if reached == result.target else None
        question = state.question.pop("say") if state.question else None
        plain = key == "reached" and len(sentences) == 1
        return Outcome(" ".join(sentences), True, final.image, question,
                       self.feedback.state(attribute, reached) if plain else None)

    def _keep_allowed(self, start: WalkStart, before: dict[str, int], result: EditResult, attribute: str,
                      on_frame, on_preview) -> tuple[EditResult, tuple[str, str]] | None:
        """After an edit that lands where another attribute is more than the face now allows (a
        child with a beard), a second walk takes that one down to what is allowed, keeping the edited
        attribute where it landed. Returns (that walk's result, (the other attribute, why)), or None.
        A face that was already past a limit before the edit (``before``) is left as it was."""
        for other in attribute_names():
            allowed, because = most_allowed(other, result.degrees)
            if other == attribute or result.degrees[other] <= allowed or before[other] > most_allowed(other, before)[0]:
                continue
            try:
                second = self.workers.walk(WalkStart(result.latent, start.original, start.photo), other, allowed,
                                           None, self.method, self.max_steps, on_frame, on_preview)
            except BackendError as error:
                raise EditError(str(error)) from error
            logger.info("then %s %d→%d (%s): %s", other, second.start_degree, second.degrees[other], because,
                        second.reason or "reached")
            if second.degrees[other] < result.degrees[other] and second.degrees[attribute] == result.degrees[attribute]:
                return second, (other, because)
            return None
        return None

    def _question(self, state: DialogState, attribute: str) -> dict | None:
        """Every other edit asks whether it is enough; the others offer an attribute not touched yet,
        each once per face (an offer let pass is not made again)."""
        degrees = state.current.degrees
        up = state.last_change > 0
        room = degrees[attribute] < MAX_DEGREE if up else degrees[attribute] > 0
        if state.edits % 2 == 1 and room:
            more = self.feedback.attribute(attribute)["more"]["up" if up else "down"]
            return {"name": "edit_attribute", "args": {"attribute": attribute, "change": 1 if up else -1},
                    "say": self.feedback.say("ask.more", more=more)}
        names = list(attribute_names())
        touched = {e.action.split(" ")[0] for e in state.entries if e.face == state.current.face}
        start = names.index(attribute)
        for other in names[start + 1:] + names[:start]:
            key = f"{state.current.face}:{other}"
            if other in touched or key in state.offered:
                continue
            offer = self.feedback.attribute(other)["offer"]["up" if degrees[other] == 0 else "down"]
            if offer is None:
                continue
            state.offered.append(key)
            return {"name": "edit_attribute", "args": {"attribute": other, **offer["args"]},
                    "say": self.feedback.say("ask.offer", offer=offer["say"])}
        return None
