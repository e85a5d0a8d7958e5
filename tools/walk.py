"""Fine-grained attribute edits by walking a latent field (after Talk-to-Edit, ICCV 2021).

``walk`` resolves a request (a target degree, or a change of ±n degrees) against what the
attribute predictor reads now, then runs two kinds of part over one ``WalkContext``:

- the **approach** (``Approach``), a stride controller: it steps the code along the backend's
  field for the attribute, re-reading after every step; halves the stride when a step jumps over
  the target degree, widens it where the reading stays flat, jumps when small steps cannot get on,
  and settles on the frame that reads the target degree most clearly;
- then the **phases**, small objects of one shape (``Phase``): ``Repair`` and ``Nudge`` move the
  kept frame by the backend's degree offsets, ``Polish`` runs the backend's gradient polish on it,
  and ``Rescue`` polishes the closest frame of a walk that did not reach its target.

A benchmark variant is another list of phases (``phases=(Repair(), Nudge())`` walks without the
polish), and every number the walk uses is in a frozen ``WalkConfig``; the backend's
``capabilities`` say how many steps make a degree, how many a walk may take and which phases it
can run. The walk yields every frame as it goes, so a UI can show the edit forming, and returns an
``EditResult``; it never raises for an edit that cannot be made, but says why. Why each setting
has its value: ``docs/walk.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from chatedit.attributes import MAX_DEGREE

from .backend import Backend, BackendError, Capabilities, Method, PredictorReading, Reading

Reason = Literal["already_at_target", "unreachable", "max_steps"]


@dataclass(frozen=True)
class WalkConfig:
    """How a walk steps, stops and refines. Stride lengths are in substeps, the backend's
    ``capabilities.substeps`` walk steps per degree; its ``max_steps`` bounds the approach."""

    # the approach
    clear: float = 0.95  # a frame reading the target degree this clearly (its probability) ends the approach
    settle: float = 1.0  # degrees' worth of steps past the clearest target frame, looking for a clearer one
    settle_before_polish: float = 0.25  # the same when a phase that sharpens the reading follows
    settle_reads: int = 2  # target frames no clearer than the clearest that end the settling
    finest: int = 8  # a stride that jumps over the target degree is halved down to 1/finest substep
    flat: float = 0.02  # a step that moves the expected degree less than this reads flat
    widen_after: int = 2  # flat steps in a row after which the stride doubles ...
    max_stride: int = 4  # ... up to this many substeps
    stall: int = 10  # flat steps in a row that leave the walk stuck
    distance_margin: float = 1.5  # a code further from real ones than this × the start's distance ...
    distance_floor: float = 2.0  # ... and than this is off the space of faces: the walk is stuck
    hold_from: float = 0.25  # field walks hold another attribute read this far off its start ...
    hold_gain: float = 2.0  # ... with its own field step back, this strong per degree of drift
    offset_jumps: tuple[float, ...] = (1.0, 0.75, 1.25)  # jumps by the degree offset straight to the goal
    jumps: tuple[float, ...] = (1.0, 1.25, 1.5, 0.75)  # then by whole field steps
    max_jumps: int = 4  # frames jumped from, per walk
    # the phases
    tries: tuple[float, ...] = (1.0, 0.5)  # a repair or nudge is tried whole, then in part
    repairs: int = 2  # moves putting back attributes read off their start, at most
    nudge_rounds: int = 3  # moves towards the middle of an unclearly read target degree, at most
    rescue_steps: int = 12  # polish steps from the closest frame of a walk that missed its target
    same_person: float = 0.85  # a polished frame this alike to the original face is kept ...
    identity_slack: float = 0.05  # ... as is one at most this much less alike than the frame it polished

    def __post_init__(self):
        if not 0 < self.clear <= 1 or self.settle < 0 or self.settle_before_polish < 0 or self.finest < 1 \
                or self.max_stride < 1 or self.stall < 1 or self.max_jumps < 0 or not self.tries:
            raise ValueError(f"walk settings out of range: {self}")


@dataclass(frozen=True)
class FaceState:
    """What an edit needs to know about a session's face; small, and owned by the session."""

    latent: torch.Tensor  # (1, w_dim) the current code
    original_identity: torch.Tensor | None  # (1, E) identity embedding of the session's original image


@dataclass(frozen=True)
class Frame:
    step: int
    latent: torch.Tensor  # (1, w_dim)
    image: torch.Tensor  # (3, H, W) in [0, 1]
    degrees: dict[str, int]
    expected: dict[str, float]
    certainty: dict[str, float]  # how clearly the read degree is read: its probability, when the reading has one
    probs: torch.Tensor | None = field(default=None, repr=False)  # (A, D) the reading's distributions, when it has them


@dataclass(frozen=True)
class EditResult:
    attribute: str
    start_degree: int
    target: int
    reached: bool
    reason: Reason | None  # None when the target degree was reached
    latent: torch.Tensor
    image: torch.Tensor
    degrees: dict[str, int]
    identity_similarity: float | None  # None when the backend has no identity model
    steps: int  # steps walked (the chosen frame may be an earlier one)
    chosen: int  # index in ``frames`` of the frame returned
    frames: list[Frame] = field(repr=False)


def resolve_target(current: int, target: int | None, change: int | None, max_degree: int = MAX_DEGREE) -> int:
    """The degree an edit aims for: ``target`` as given, or ``current + change`` kept in range."""
    if (target is None) == (change is None):
        raise ValueError(f"give exactly one of target or change, got target={target!r}, change={change!r}")
    if target is not None:
        if not 0 <= target <= max_degree:
            raise ValueError(f"target must be a degree from 0 to {max_degree}, got {target!r}")
        return int(target)
    if change == 0 or not -max_degree <= change <= max_degree:
        raise ValueError(f"change must be a non-zero whole number from -{max_degree} to {max_degree}, got {change!r}")
    return int(min(max(current + change, 0), max_degree))


def _draw(backend: Backend, step: int, w: torch.Tensor, on_preview=None) -> Frame:
    """The frame of code ``w``: its image and what the steering predictor reads there."""
    if on_preview is not None and backend.capabilities.previews:
        image = backend.generate(w, on_preview=on_preview)
    else:
        image = backend.generate(w)
    reading = backend.predict(image)
    names = backend.attributes
    degrees, probs = reading.degrees[0], reading.probs  # (A,), (B, A, D) or None
    if probs is not None:
        certainty = probs[0].gather(-1, degrees[:, None].to(probs.device))[:, 0]
    else:  # a reading without a distribution: how near the expected degree is to the one read
        certainty = 1 - (reading.expected[0] - degrees).abs()
    return Frame(
        step=step,
        latent=w,
        image=image[0],
        degrees={n: int(degrees[i]) for i, n in enumerate(names)},
        expected={n: float(reading.expected[0, i]) for i, n in enumerate(names)},
        certainty={n: float(certainty[i]) for i, n in enumerate(names)},
        probs=None if probs is None else probs[0],
    )


@dataclass
class WalkContext:
    """One walk: what it was asked, and every frame drawn for it so far (``frames[0]`` is the start)."""

    backend: Backend
    state: FaceState
    attribute: str
    goal: int
    method: Method
    config: WalkConfig
    max_steps: int
    frames: list[Frame]
    on_preview: Callable[[torch.Tensor], None] | None = None
    _likeness: dict[int, float] = field(default_factory=dict)  # frame step → similarity to the original

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    @property
    def a(self) -> int:
        return self.backend.attributes.index(self.attribute)

    @property
    def start(self) -> Frame:
        return self.frames[0]

    @property
    def current(self) -> int:
        return self.start.degrees[self.attribute]

    @property
    def sign(self) -> float:
        return 1.0 if self.goal > self.current else -1.0

    @property
    def steps(self) -> int:
        return len(self.frames) - 1

    def draw(self, w: torch.Tensor, preview: bool = False) -> Frame:
        """The next frame, at ``w``, not yet part of the walk (``record`` adds it)."""
        return _draw(self.backend, len(self.frames), w, self.on_preview if preview else None)

    def record(self, frame: Frame) -> Frame:
        self.frames.append(frame)
        return frame

    def reaches(self, frame: Frame) -> bool:
        return frame.degrees[self.attribute] == self.goal

    def off(self, frame: Frame) -> list[int]:
        """The other attributes that ``frame`` reads at another degree than the start."""
        names = self.backend.attributes
        return [b for b, n in enumerate(names) if n != self.attribute and frame.degrees[n] != self.start.degrees[n]]

    def similarity(self, frame: Frame) -> float:
        """Identity similarity of ``frame`` to the session's original face, read once per frame."""
        if frame.step not in self._likeness:
            embedding = self.backend.identity(frame.image[None])
            self._likeness[frame.step] = float(self.backend.similarity(embedding, self.state.original_identity)[0])
        return self._likeness[frame.step]

    def closest(self) -> Frame:
        """The frame nearest the goal degree; between equally near ones, a frame that changed the face."""
        return min(self.frames, key=lambda f: (abs(f.degrees[self.attribute] - self.goal),
                                               f.degrees[self.attribute] == self.current,
                                               abs(f.expected[self.attribute] - self.goal)))

    def result(self, kept: Frame, reached: bool, reason: Reason | None) -> EditResult:
        similarity = None if self.state.original_identity is None else self.similarity(kept)
        return EditResult(self.attribute, self.current, self.goal, reached, reason, kept.latent, kept.image,
                          kept.degrees, similarity, self.steps, kept.step, self.frames)


class Approach:
    """The walk towards the goal: a stride controller over one ``WalkContext``.

    Each step adds a stride of the field's step (plus, on a field walk, the other attributes'
    steps back: ``hold``) and re-reads the face. A step that jumps over the whole target degree
    is taken again at half the stride; where the reading stays flat the stride doubles. The walk
    is stuck when a step still jumps over the goal at the finest stride, stays flat ``stall``
    steps, or leaves the space of real faces (``latent_distance`` past the limit); stuck, or
    reading a degree behind its start, it jumps (``jump``), and gives up when no jump lands. On
    the target degree it settles on the clearest reading. ``run`` returns the kept frame and,
    when the goal was not reached, why."""

    def __init__(self, walk: WalkContext, settle: float):
        config, substeps = walk.config, walk.capabilities.substeps
        self.walk, self.config, self.substeps = walk, config, substeps
        self.settle = int(settle * substeps)  # steps past the clearest target frame
        self.scale = 1.0 / substeps  # the stride, in field steps
        self.progress, self.stalled = -float("inf"), 0  # furthest expected degree (signed), flat steps in a row
        self.best: Frame | None = None  # the clearest frame reading the goal
        self.unclear = 0  # target frames since ``best`` that read it less clearly
        self.tried: set[int] = set()  # steps of the frames jumped from
        start_distance = float(walk.backend.latent_distance(walk.state.latent))
        self.limit = max(start_distance * config.distance_margin, config.distance_floor)

    def run(self) -> Generator[Frame, None, tuple[Frame, Reason | None]]:
        walk, attribute, sign = self.walk, self.walk.attribute, self.walk.sign
        w, last = walk.start.latent, walk.start  # the code walked to and its frame
        while walk.steps < walk.max_steps:
            # 1. one stride along the field, and read the face there
            change = walk.backend.step(walk.method, walk.a, w, int(sign)) + self.hold(w, last)
            candidate = w + self.scale * change
            frame = walk.draw(candidate, preview=True)
            degree = frame.degrees[attribute]
            overshoot = sign * (degree - walk.goal) > 0
            if overshoot and self.best is None and self.halve():
                continue  # stepped over the whole target degree: the same step, shorter
            if not overshoot or self.best is not None:
                yield walk.record(frame)
                w, last = candidate, frame

            # 2. on the target degree: settle on its clearest reading
            if degree == walk.goal:
                if self.settled(frame):
                    break
                continue
            if self.best is not None:
                break  # left the target degree

            # 3. off it: widen on a flat reading; jump when stuck or going the wrong way
            self.read(sign * frame.expected[attribute])
            stuck = overshoot or self.stalled >= self.config.stall or self.too_far(candidate)
            if stuck or sign * (degree - walk.current) < 0:
                landed = self.jump()
                if landed is not None:
                    yield walk.record(landed)
                    w, last = landed.latent, landed
                    self.restart(landed)
                    continue
            if stuck:
                return walk.closest(), "unreachable"
        if self.best is not None:
            return self.best, None
        return walk.closest(), "max_steps"

    def halve(self) -> bool:
        """Halves the stride, unless it is already the finest; says whether it did."""
        if self.scale > 1 / (self.substeps * self.config.finest):
            self.scale /= 2
            return True
        return False

    def read(self, moved: float) -> None:
        """Records how far (signed expected degree) the last step got; a flat stretch of the field
        lengthens the stride until the reading moves again."""
        if moved > self.progress + self.config.flat:
            self.stalled = 0
        else:
            self.stalled += 1
            if self.stalled >= self.config.widen_after:
                self.scale = min(self.scale * 2, self.config.max_stride / self.substeps)
        self.progress = max(self.progress, moved)

    def settled(self, frame: Frame) -> bool:
        """Keeps ``frame``, which reads the goal, when it reads it the clearest yet; says whether
        to stop: a clear reading, or no clearer one for a while."""
        clarity = frame.certainty[self.walk.attribute]
        if self.best is None or clarity > self.best.certainty[self.walk.attribute]:
            self.best, self.unclear = frame, 0
        else:
            self.unclear += 1
        return (self.unclear >= self.config.settle_reads or clarity > self.config.clear
                or self.walk.steps - self.best.step >= self.settle)

    def restart(self, landed: Frame) -> None:
        """After a jump: steps from the frame it landed on, at the first stride."""
        self.scale, self.stalled = 1.0 / self.substeps, 0
        self.progress = self.walk.sign * landed.expected[self.walk.attribute]
        if self.walk.reaches(landed):
            self.best, self.unclear = landed, 0

    def too_far(self, w: torch.Tensor) -> bool:
        return float(self.walk.backend.latent_distance(w)) > self.limit

    def hold(self, w: torch.Tensor, last: Frame) -> torch.Tensor:
        """What a field walk adds to each step to hold the other attributes: for each one ``last``
        reads more than ``hold_from`` of a degree off its start, its own field step back, in
        proportion to the drift (up to a degree). Zero for the linear baseline, which stays one
        direction. Fields keep the other attributes only on average."""
        walk, config = self.walk, self.config
        change = torch.zeros_like(w)
        if walk.method != "field":
            return change
        for b, name in enumerate(walk.backend.attributes):
            drift = last.expected[name] - walk.start.expected[name]
            if name != walk.attribute and abs(drift) > config.hold_from:
                step = walk.backend.step(walk.method, b, w, -1 if drift > 0 else 1)
                change = change + config.hold_gain * min(abs(drift), 1.0) * step
        return change

    def jump(self) -> Frame | None:
        """A jump from the frame that reads most clearly the degree furthest towards the goal (not
        past it), landing on a degree nearer the goal without passing it, or None.

        A degree scale need not be a line in the face's look: eyeglasses go thick frame (3),
        thin-frame sunglasses (4), thick-frame sunglasses (5), so the way between 3 and 4 looks
        like 5, and small field steps read the wrong degree there. A field walk first tries the
        backend's degree offsets (the average change from the anchor's degree straight to the
        goal); the linear baseline does not, so it stays one direction per attribute. Then whole
        field steps, which cross such a gap where its substeps cannot."""
        walk, attribute, sign, goal = self.walk, self.walk.attribute, self.walk.sign, self.walk.goal
        if len(self.tried) >= self.config.max_jumps:
            return None
        on_path = [f for f in walk.frames if sign * (f.degrees[attribute] - goal) < 0]
        anchor = max(on_path, key=lambda f: (sign * f.degrees[attribute],
                                             -abs(f.expected[attribute] - f.degrees[attribute])))
        if anchor.step in self.tried:
            return None
        self.tried.add(anchor.step)

        def changes() -> Iterator[torch.Tensor]:
            if walk.method == "field" and walk.capabilities.degree_offsets:
                offset = walk.backend.degree_offset(walk.a, anchor.latent, anchor.degrees[attribute], goal)
                yield from (k * offset for k in self.config.offset_jumps)
            step = walk.backend.step(walk.method, walk.a, anchor.latent, int(sign))
            yield from (k * step for k in self.config.jumps)

        for change in changes():
            candidate = anchor.latent + change
            if self.too_far(candidate):
                continue
            frame = walk.draw(candidate)
            moved = sign * (frame.degrees[attribute] - anchor.degrees[attribute])
            if moved > 0 and sign * (frame.degrees[attribute] - goal) <= 0:
                return frame
        return None


class Phase(Protocol):
    """A step of the walk after the approach: from the kept frame, it draws and records frames in
    the walk, yields each, and returns the frame to keep (``kept`` itself when nothing helped).
    A kept frame reads the goal exactly when the walk reached it."""

    on_reached: bool  # True: refines a walk that reached its goal; False: rescues one that did not
    sharpens: bool  # it makes the goal read more clearly, so the approach settles for less first

    def applies(self, walk: WalkContext) -> bool: ...  # whether the walk's backend can run it

    def __call__(self, walk: WalkContext, kept: Frame) -> Generator[Frame, None, Frame]: ...


class _Moves:
    """Moves from the kept frame by the backend's degree offsets: each is tried whole and in part
    (``tries``) and kept only when it still reads the goal and is ``better``; at most ``rounds``
    moves, and none after one that helped neither way."""

    on_reached, sharpens = True, False

    def applies(self, walk: WalkContext) -> bool:
        return walk.capabilities.degree_offsets

    def rounds(self, config: WalkConfig) -> int: ...
    def move(self, walk: WalkContext, frame: Frame) -> torch.Tensor | None: ...
    def better(self, walk: WalkContext, frame: Frame, than: Frame) -> bool: ...

    def __call__(self, walk: WalkContext, kept: Frame) -> Generator[Frame, None, Frame]:
        for _ in range(self.rounds(walk.config)):
            change = self.move(walk, kept)
            if change is None:
                break
            for k in walk.config.tries:
                frame = walk.record(walk.draw(kept.latent + k * change))
                yield frame
                if walk.reaches(frame) and self.better(walk, frame, kept):
                    kept = frame
                    break
            else:
                break
        return kept


class Repair(_Moves):
    """Puts back the other attributes the kept frame reads off their start, each by its degree
    offset back to its start degree; better is fewer attributes off."""

    def rounds(self, config: WalkConfig) -> int:
        return config.repairs

    def move(self, walk: WalkContext, frame: Frame) -> torch.Tensor | None:
        wrong, names = walk.off(frame), walk.backend.attributes
        if not wrong:
            return None
        return sum(walk.backend.degree_offset(b, frame.latent, frame.degrees[names[b]], walk.start.degrees[names[b]])
                   for b in wrong)

    def better(self, walk: WalkContext, frame: Frame, than: Frame) -> bool:
        return len(walk.off(frame)) < len(walk.off(than))


class Nudge(_Moves):
    """Moves a target degree read unclearly (no more than ``clear``) towards its middle: by where
    the target degree sits on average less where the expected reading sits (between two degrees,
    interpolated). A degree read unclearly is one an independent reader often reads as a
    neighbour. Better is a clearer reading with no more attributes off."""

    def rounds(self, config: WalkConfig) -> int:
        return config.nudge_rounds

    def move(self, walk: WalkContext, frame: Frame) -> torch.Tensor | None:
        if frame.certainty[walk.attribute] > walk.config.clear:
            return None
        e = min(max(frame.expected[walk.attribute], 0.0), float(MAX_DEGREE))
        low = int(e)
        high, frac = min(low + 1, MAX_DEGREE), e - low
        offset = walk.backend.degree_offset
        return (1 - frac) * offset(walk.a, frame.latent, low, walk.goal) + \
            frac * offset(walk.a, frame.latent, high, walk.goal)

    def better(self, walk: WalkContext, frame: Frame, than: Frame) -> bool:
        return (frame.certainty[walk.attribute] > than.certainty[walk.attribute]
                and len(walk.off(frame)) <= len(walk.off(than)))


class Polish:
    """The backend's gradient polish of the kept frame's code: surer of the goal degree, the other
    attributes pulled back to their readings at the start and the face towards the session's
    original. Walk steps end where the steering reading just reaches the target; the field knows
    directions, not where a degree's middle is for this face, and the predictors' gradient does.

    The polished frame is kept when it reads the goal with no more attributes off and still looks
    like the original: a similarity of ``same_person`` or more, or at most ``identity_slack`` below
    the frame it polished (the pull towards the original is one term of several)."""

    on_reached, sharpens = True, True

    def steps(self, config: WalkConfig) -> int | None:
        return None  # the backend's own number

    def applies(self, walk: WalkContext) -> bool:
        return walk.capabilities.polish

    def __call__(self, walk: WalkContext, kept: Frame) -> Generator[Frame, None, Frame]:
        start, config = walk.start, walk.config
        if start.probs is None:
            return kept
        identity = walk.state.original_identity
        w = walk.backend.polish(kept.latent, walk.a, walk.goal, start.probs, identity, self.steps(config),
                                on_preview=walk.on_preview)
        frame = walk.record(walk.draw(w))
        yield frame
        keep = walk.reaches(frame) and len(walk.off(frame)) <= len(walk.off(kept))
        if keep and identity is not None:
            alike = walk.similarity(frame)
            keep = alike >= config.same_person or alike >= walk.similarity(kept) - config.identity_slack
        return frame if keep else kept


class Rescue(Polish):
    """A longer polish (``rescue_steps``) of the closest frame of a walk that missed its goal: the
    gradient finds codes the field's steps and jumps did not. The walk reaches its goal when the
    polished frame is kept."""

    on_reached, sharpens = False, False

    def steps(self, config: WalkConfig) -> int | None:
        return config.rescue_steps


FIELD_PHASES: tuple[Phase, ...] = (Repair(), Nudge(), Polish(), Rescue())  # the order they run in


def default_phases(method: Method) -> tuple[Phase, ...]:
    """A field walk's phases; the linear baseline takes none (it stays one direction)."""
    return FIELD_PHASES if method == "field" else ()


def walk(
    backend: Backend,
    state: FaceState,
    attribute: str,
    target: int | None = None,
    change: int | None = None,
    method: Method = "field",
    *,
    phases: Sequence[Phase] | None = None,
    config: WalkConfig = WalkConfig(),
    max_steps: int | None = None,
    on_preview: Callable[[torch.Tensor], None] | None = None,
) -> Generator[Frame, None, EditResult]:
    """Yields each frame of the edit; the generator's return value is the ``EditResult``.

    ``phases`` run after the approach, in order (None: ``default_phases(method)``); those the
    backend's capabilities do not allow are left out. ``max_steps`` bounds the approach (None: the
    backend's ``capabilities.max_steps``). Use ``edit(...)`` to get the result directly."""
    names = backend.attributes
    if attribute not in names:
        raise ValueError(f"unknown attribute {attribute!r}; known attributes are {', '.join(names)}")

    # 1. read where the face is now and resolve the request to a target degree
    start = _draw(backend, 0, state.latent)
    goal = resolve_target(start.degrees[attribute], target, change)
    budget = backend.capabilities.max_steps if max_steps is None else max_steps
    context = WalkContext(backend, state, attribute, goal, method, config, budget, [start], on_preview)
    if context.current == goal:
        return context.result(start, True, "already_at_target")

    # 2. the approach; it settles for less when a phase follows that sharpens the reading
    usable = [p for p in (default_phases(method) if phases is None else phases) if p.applies(context)]
    settle = config.settle_before_polish if any(p.sharpens for p in usable) else config.settle
    kept, reason = yield from Approach(context, settle).run()

    # 3. the phases: refinements of a walk that reached its goal, rescues of one that did not
    for phase in usable:
        if phase.on_reached == context.reaches(kept):
            kept = yield from phase(context, kept)
    reached = context.reaches(kept)
    return context.result(kept, reached, None if reached else reason)


def edit(backend: Backend, state: FaceState, attribute: str, target: int | None = None,
         change: int | None = None, method: Method = "field", *, phases: Sequence[Phase] | None = None,
         config: WalkConfig = WalkConfig(), max_steps: int | None = None, on_frame=None,
         on_preview=None) -> EditResult:
    """Runs ``walk`` to the end, calling ``on_frame(frame)`` for every intermediate frame and
    ``on_preview(image)`` for images a backend draws on the way to a frame."""
    frames = walk(backend, state, attribute, target=target, change=change, method=method, phases=phases,
                  config=config, max_steps=max_steps, on_preview=on_preview)
    while True:
        try:
            frame = next(frames)
        except StopIteration as done:
            return done.value
        if on_frame is not None:
            on_frame(frame)


__all__ = ["Approach", "BackendError", "EditResult", "FIELD_PHASES", "FaceState", "Frame", "Method", "Nudge",
           "Phase", "Polish", "PredictorReading", "Reading", "Repair", "Rescue", "WalkConfig", "WalkContext",
           "default_phases", "edit", "resolve_target", "walk"]
