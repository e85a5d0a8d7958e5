"""The walk's stopping rule, failure reasons, directions, phases and streaming, on a transparent backend.

``LineBackend`` is a world where the latent *is* the attribute values: the predictor reads them
back exactly, so every expectation below follows from the walk's rules alone.
"""

from dataclasses import dataclass, replace

import pytest
import torch

from chatedit.tools.backend import Backend, Capabilities
from chatedit.tools.walk import (FaceState, Nudge, PredictorReading, Repair, WalkConfig, edit, resolve_target,
                                 walk)


@dataclass
class LineReading:
    degrees: torch.Tensor
    expected: torch.Tensor
    probs: None = None  # no distribution over degrees


class LineBackend(Backend):
    name, attributes, resolution, device = "line", ("smiling", "age"), 4, torch.device("cpu")
    capabilities = Capabilities(substeps=8, max_steps=64)

    def __init__(self, wall: float = 99.0, speed: float = 1.0):
        self.wall, self.speed, self.calls = wall, speed, 0

    def intake(self, picture):
        raise NotImplementedError

    def sample(self, seed):
        raise NotImplementedError

    def encode(self, image, refine_steps=0, on_progress=None):
        raise NotImplementedError

    def generate(self, w, on_preview=None):
        image = torch.zeros(w.shape[0], 3, 4, 4)
        image[:, 0, 0, :2] = w
        return image

    def predict(self, image):
        self.calls += 1
        values = image[:, 0, 0, :2].clamp(0, 5)
        return LineReading(values.round().long(), values)

    def identity(self, image):
        return torch.ones(image.shape[0], 1)

    def step(self, method, attribute, w, direction=1):
        out = torch.zeros_like(w)
        out[:, attribute] = min(self.speed, max(self.wall - float(w[0, attribute]), 0.0))  # never past the wall
        if method == "linear":
            out[:, 1 - attribute] = 0.3  # the baseline drags the other attribute along
        return out * direction

    def latent_distance(self, w):
        return torch.tensor(1.0)


def state(smiling: float, age: float = 2.0) -> FaceState:
    return FaceState(torch.tensor([[smiling, age]]), torch.ones(1, 1))


def test_walk_stops_inside_the_target_degree_near_its_middle():
    result = edit(LineBackend(), state(1.0), "smiling", target=3)
    assert result.reached and result.reason is None
    assert result.degrees["smiling"] == 3 and result.degrees["age"] == 2
    assert abs(result.latent[0, 0].item() - 3.0) <= 0.13
    assert result.steps == len(result.frames) - 1 > 0
    assert result.frames[result.chosen].latent is result.latent


def test_change_is_relative_to_what_the_predictor_reads_and_is_kept_in_range():
    assert resolve_target(4, None, 3) == 5
    assert resolve_target(1, None, -2) == 0
    result = edit(LineBackend(), state(4.0), "smiling", change=-2)
    assert result.start_degree == 4 and result.target == 2 and result.degrees["smiling"] == 2


def test_backward_walks_go_down():
    result = edit(LineBackend(), state(5.0), "smiling", target=0)
    values = [f.expected["smiling"] for f in result.frames]
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert result.degrees["smiling"] == 0


def test_already_at_target_makes_no_step():
    backend = LineBackend()
    result = edit(backend, state(3.1), "smiling", target=3)
    assert result.reason == "already_at_target" and result.reached and result.steps == 0
    assert torch.equal(result.latent, state(3.1).latent)


def test_a_wall_makes_the_edit_unreachable_and_returns_the_closest_frame():
    result = edit(LineBackend(wall=3.2), state(1.0), "smiling", target=5)
    assert result.reason == "unreachable" and not result.reached
    assert result.degrees["smiling"] == 3


def test_step_budget_runs_out_with_max_steps():
    result = edit(LineBackend(speed=0.2), state(0.0), "smiling", target=5, max_steps=10)
    assert result.reason == "max_steps" and not result.reached and result.steps == 10
    assert result.degrees["smiling"] == 0  # 10 steps of 0.2/8 went 0.25 of a degree


def test_big_steps_that_jump_a_degree_are_halved():
    result = edit(LineBackend(speed=20.0), state(1.0), "smiling", target=2)
    assert result.reached and result.degrees["smiling"] == 2


def test_frames_stream_before_the_walk_ends():
    backend = LineBackend()
    frames = walk(backend, state(0.0), "smiling", target=4)
    first = next(frames)
    calls_after_first = backend.calls
    assert first.step == 1 and first.degrees["smiling"] == 0
    seen = [first, *frames]  # exhausting the generator finishes the walk
    assert backend.calls > calls_after_first
    assert [f.step for f in seen] == list(range(1, len(seen) + 1))


def test_on_frame_sees_every_step_in_order():
    got = []
    result = edit(LineBackend(), state(0.5), "age", target=4, on_frame=got.append)
    assert [f.step for f in got] == [f.step for f in result.frames[1:]]
    assert got[-1].expected["age"] >= got[0].expected["age"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attribute="hat", target=1), "unknown attribute 'hat'"),
        (dict(attribute="smiling", target=7), "target must be a degree from 0 to 5, got 7"),
        (dict(attribute="smiling", change=0), "non-zero"),
        (dict(attribute="smiling", target=1, change=1), "exactly one of target or change"),
        (dict(attribute="smiling"), "exactly one of target or change"),
    ],
)
def test_bad_requests_raise_before_any_step(kwargs, message):
    backend = LineBackend()
    with pytest.raises(ValueError, match=message):
        edit(backend, state(1.0), **kwargs)
    assert backend.calls <= 1


def test_a_weak_field_is_walked_with_longer_strides_instead_of_giving_up():
    result = edit(LineBackend(speed=0.1), state(1.0), "smiling", target=3)
    assert result.reached and result.degrees["smiling"] == 3
    assert result.steps <= 64


class GapBackend(LineBackend):
    """Like ``LineBackend``, but the way between smiling 3 and 4 reads 5 (as eyeglasses' thick
    frame → thin-frame sunglasses passes thick-frame sunglasses): small steps cannot get across."""

    def predict(self, image):
        reading = super().predict(image)
        gap = (image[:, 0, 0, 0] > 3.3) & (image[:, 0, 0, 0] < 3.7)
        reading.degrees[gap, 0] = 5
        reading.expected[gap, 0] = 4.0
        return reading


def test_a_degree_off_the_small_steps_path_is_reached_by_a_whole_field_step():
    result = edit(GapBackend(), state(1.0), "smiling", target=4)
    assert result.reached and result.degrees["smiling"] == 4
    assert all(f.degrees["smiling"] != 5 for f in result.frames)  # it never showed the wrong degree
    strides = [float(b.latent[0, 0] - a.latent[0, 0]) for a, b in zip(result.frames, result.frames[1:])]
    assert max(strides) > 0.5  # one jump longer than any stride (at most half a degree)
    assert any(float(f.latent[0, 0]) == 4.0 for f in result.frames)  # a whole step from where it read 3 clearly


def test_a_walk_that_reads_a_degree_behind_its_start_jumps_instead():
    result = edit(GapBackend(), state(4.0), "smiling", target=2)
    assert result.reached and result.degrees["smiling"] == 2
    assert result.frames[-1].latent[0, 1] == 2.0  # age untouched
    assert sum(f.degrees["smiling"] == 5 for f in result.frames) == 1  # turned back at the first wrong-way frame


class OffsetBackend(GapBackend):
    """``GapBackend`` with degree offsets: the average change between two degrees is exact here."""

    capabilities = Capabilities(degree_offsets=True)

    def degree_offset(self, attribute, w, from_degree, to_degree):
        out = torch.zeros_like(w)
        out[:, attribute] = float(to_degree - from_degree)
        return out


def test_where_the_field_ends_a_field_walk_jumps_by_the_degree_offsets():
    result = edit(OffsetBackend(wall=3.2), state(1.0), "smiling", target=5)  # the field ends before the gap
    assert result.reached and result.degrees["smiling"] == 5 and result.degrees["age"] == 2
    assert all(f.degrees["smiling"] != 4 for f in result.frames)  # one jump, from a frame reading 3, to 5
    linear = edit(OffsetBackend(wall=3.2), state(1.0), "smiling", target=5, method="linear")
    assert linear.reason == "unreachable"  # the baseline stays one direction: no offsets


def test_jumps_give_up_where_the_field_ends():
    result = edit(GapBackend(wall=3.2), state(1.0), "smiling", target=5)  # the field ends before the gap
    assert result.reason == "unreachable" and result.degrees["smiling"] == 3
    assert result.steps < 64


class DriftBackend(LineBackend):
    """``LineBackend`` whose field for one attribute drags the other along (0.3 of a degree per
    degree), as an age field that also greys bangs: what the walk must hold against."""

    def step(self, method, attribute, w, direction=1):
        out = super().step(method, attribute, w, direction)
        if method == "field":
            out[:, 1 - attribute] = 0.3 * direction
        return out


def test_a_field_walk_holds_the_other_attributes_its_field_drags():
    result = edit(DriftBackend(), state(1.0, age=2.0), "smiling", target=4)
    assert result.reached and result.degrees["smiling"] == 4
    assert result.degrees["age"] == 2  # dragged 0.9 of a degree unheld
    assert all(abs(f.expected["age"] - 2.0) < 0.5 for f in result.frames)
    linear = edit(DriftBackend(), state(1.0, age=2.0), "smiling", target=4, method="linear")
    assert linear.reached and linear.degrees["age"] == 3  # the baseline holds nothing


class DriftingOffsetBackend(OffsetBackend):
    """``OffsetBackend`` whose degree offsets for smiling also move age a degree per degree: the
    average change between two smile degrees, confounded, lands on another age."""

    def degree_offset(self, attribute, w, from_degree, to_degree):
        out = super().degree_offset(attribute, w, from_degree, to_degree)
        if attribute == 0:
            out[:, 1] = 0.5 * (to_degree - from_degree)
        return out


def test_an_attribute_a_jump_changed_is_put_back_by_its_degree_offsets():
    result = edit(DriftingOffsetBackend(wall=3.2), state(1.0, age=2.0), "smiling", target=5)
    assert result.reached and result.degrees["smiling"] == 5
    assert any(f.degrees["age"] == 3 for f in result.frames)  # the jump landed a degree older
    assert result.degrees["age"] == 2


class ProbBackend(LineBackend):
    """A predictor with a distribution over degrees, whose reading of a degree is clearest ``skew``
    above its middle (with a skew, the expected degree and the probability of the degree read
    disagree about where a degree is best shown)."""

    def __init__(self, skew: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.skew = skew

    def predict(self, image):
        line = super().predict(image)
        v = line.expected
        clear = 0.55 + 0.45 * torch.exp(-(((v - line.degrees - self.skew) / 0.15) ** 2))
        probs = torch.zeros(*v.shape, 6)
        probs.scatter_(-1, line.degrees[..., None], clear[..., None])
        neighbour = (line.degrees + torch.where(v >= line.degrees, 1, -1)).clamp(0, 5)
        probs.scatter_add_(-1, neighbour[..., None], (1 - clear)[..., None])
        return PredictorReading(line.degrees, v, probs)


def test_the_walk_settles_where_the_target_degree_is_read_most_clearly():
    result = edit(ProbBackend(skew=0.3), state(1.0), "smiling", target=3)
    assert result.reached and result.degrees["smiling"] == 3
    chosen = result.frames[result.chosen]
    assert 3.15 <= float(result.latent[0, 0]) <= 3.45  # not the middle by the expected degree, 3.0
    at_target = [f for f in result.frames if f.degrees["smiling"] == 3]
    assert chosen.certainty["smiling"] == max(f.certainty["smiling"] for f in at_target)


class NudgeBackend(ProbBackend):
    """``ProbBackend`` with exact degree offsets."""

    capabilities = Capabilities(degree_offsets=True)
    degree_offset = OffsetBackend.degree_offset


def test_a_target_read_unclearly_where_the_field_ends_is_nudged_to_the_middle_of_the_degree():
    result = edit(NudgeBackend(wall=2.6), state(1.0), "smiling", target=3)  # reads 3 from 2.5, unclearly
    assert result.reached and result.degrees["smiling"] == 3
    assert abs(float(result.latent[0, 0]) - 3.0) < 0.1 and result.frames[result.chosen].certainty["smiling"] > 0.95
    assert result.degrees["age"] == 2
    linear = edit(NudgeBackend(wall=2.6), state(1.0), "smiling", target=3, method="linear")
    assert linear.reached and float(linear.latent[0, 0]) <= 2.6  # the baseline takes no nudge


class PolishBackend(ProbBackend):
    """``ProbBackend`` with a ``polish`` that moves the code by ``move`` (default: to the middle of the
    target degree and the other attribute back to ``age``), recording what it was given."""

    capabilities = Capabilities(polish=True)

    def __init__(self, move=None, **kwargs):
        super().__init__(**kwargs)
        self.move, self.polished = move, []

    def polish(self, w, attribute, target, keep, identity, steps=None, on_preview=None):
        self.polished.append((attribute, target, keep, identity))
        out = w.clone()
        if self.move is None:
            out[0, attribute] = float(target)
            out[0, 1 - attribute] = 2.0
        else:
            out[0] += torch.tensor(self.move)
        return out


def test_a_field_walk_ends_with_the_backends_polish_when_it_still_reads_the_target():
    backend = PolishBackend(skew=0.3)
    start = state(1.0)
    result = edit(backend, start, "smiling", target=3)
    assert result.reached and result.degrees == {"smiling": 3, "age": 2}
    assert float(result.latent[0, 0]) == 3.0 and result.chosen == len(result.frames) - 1  # the polished frame
    (attribute, target, keep, identity), = backend.polished
    assert (attribute, target) == (0, 3) and identity is start.original_identity
    assert keep.shape == (2, 6) and int(keep[1].argmax()) == 2  # the other attributes' reading at the start


@pytest.mark.parametrize("move", [(0.6, 0.0), (0.0, 0.7)])  # past the target degree; the other attribute off
def test_a_polish_that_loses_the_target_or_moves_another_attribute_is_shown_but_not_kept(move):
    result = edit(PolishBackend(move=move, skew=0.3), state(1.0), "smiling", target=3)
    assert result.reached and result.degrees == {"smiling": 3, "age": 2}
    assert result.chosen < len(result.frames) - 1  # the walk's own frame; the polished one was streamed
    assert result.frames[-1].degrees != result.degrees


class FaceBackend(PolishBackend):
    """``PolishBackend`` whose codes carry a third number, the face: drawn into the image, it is what
    the identity model reads (the original face is 0)."""

    def generate(self, w, on_preview=None):
        image = super().generate(w[:, :2])
        image[:, 0, 1, 0] = w[:, 2]
        return image

    def identity(self, image):
        return torch.nn.functional.normalize(torch.stack([torch.ones(len(image)), image[:, 0, 1, 0]], -1), dim=-1)


# similarity to the original 0.98 (a little less alike), 0.89 (less, but still the same person), 0.71
@pytest.mark.parametrize("face, kept", [(0.2, True), (0.5, True), (1.0, False)])
def test_a_polish_that_makes_the_face_another_persons_is_not_kept(face, kept):
    start = FaceState(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    result = edit(FaceBackend(move=(0.0, 0.0, face), skew=0.3), start, "smiling", target=3)
    assert result.reached and result.degrees == {"smiling": 3, "age": 2}
    assert (result.chosen == len(result.frames) - 1) is kept
    assert result.identity_similarity == pytest.approx((1 + face**2) ** -0.5 if kept else 1.0, abs=1e-4)


def test_the_linear_baseline_and_walks_without_the_polish_phase_are_not_polished():
    backend = PolishBackend(skew=0.3)
    assert edit(backend, state(1.0), "smiling", target=3, method="linear").reached
    assert edit(backend, state(1.0), "smiling", target=3, phases=(Repair(), Nudge())).reached
    assert backend.polished == []


def test_a_backend_that_cannot_polish_is_not_asked_to():
    backend = PolishBackend(skew=0.3)
    backend.capabilities = replace(backend.capabilities, polish=False)
    assert edit(backend, state(1.0), "smiling", target=3).reached and backend.polished == []


def test_a_walk_stopped_by_a_wall_is_polished_from_its_closest_frame_and_reaches_when_that_reads_the_target():
    backend = PolishBackend(wall=2.4, skew=0.3)  # the field cannot take smiling past 2.4
    result = edit(backend, state(1.0), "smiling", target=4)
    assert result.reached and result.reason is None and result.degrees["smiling"] == 4
    (_, target, _, _), = backend.polished
    assert target == 4
    stuck = edit(PolishBackend(move=(0.3, 0.0), wall=2.4, skew=0.3), state(1.0), "smiling", target=4)
    assert not stuck.reached and stuck.reason == "unreachable" and stuck.degrees["smiling"] < 4


class ClearingBackend(LineBackend):
    """A predictor whose reading of a degree grows clearer all the way across it: from 0.9 at its
    lower edge to 1.0 at its upper one, so a walk that went on settling would stop near the top."""

    def predict(self, image):
        line = super().predict(image)
        v = line.expected
        clear = 0.9 + 0.1 * (v - line.degrees + 0.5)
        probs = torch.zeros(*v.shape, 6)
        probs.scatter_(-1, line.degrees[..., None], clear[..., None])
        neighbour = (line.degrees + torch.where(v >= line.degrees, 1, -1)).clamp(0, 5)
        probs.scatter_add_(-1, neighbour[..., None], (1 - clear)[..., None])
        return PredictorReading(line.degrees, v, probs)


def test_a_walk_stops_at_the_first_frame_reading_the_target_clearly():
    result = edit(ClearingBackend(), state(1.05), "smiling", target=3)  # steps of 1/8: 2.55, 2.675, ...
    assert result.reached and result.degrees["smiling"] == 3
    read = [f.certainty["smiling"] for f in result.frames if f.degrees["smiling"] == 3]
    assert read[-1] > 0.95 and all(c <= 0.95 for c in read[:-1])  # 0.9175, 0.93, 0.9425, then 0.955
    assert result.chosen == len(result.frames) - 1  # no settling on past it, towards 0.99 at 3.425
    assert float(result.latent[0, 0]) == pytest.approx(3.05, abs=1e-4)
    settling = edit(ClearingBackend(), state(1.05), "smiling", target=3, config=WalkConfig(clear=1.0))
    assert float(settling.latent[0, 0]) == pytest.approx(3.425, abs=1e-4)  # the clearest, the last before 4


def test_the_backends_capabilities_set_the_stride_and_the_step_budget():
    backend = LineBackend(speed=0.2)
    backend.capabilities = Capabilities(substeps=2, max_steps=10)
    result = edit(backend, state(0.0), "smiling", target=5)
    assert result.reason == "max_steps" and result.steps == 10
    assert float(result.frames[1].latent[0, 0]) == pytest.approx(0.1)  # a step of 1/2, not 1/8


class PreviewBackend(LineBackend):
    def __init__(self, previews: bool):
        super().__init__()
        self.capabilities, self.previewed = Capabilities(previews=previews), 0

    def generate(self, w, on_preview=None):
        if on_preview is not None:
            on_preview(torch.zeros(3, 4, 4))
            self.previewed += 1
        return super().generate(w)


@pytest.mark.parametrize("previews", [True, False])
def test_previews_are_asked_for_walk_steps_only_where_the_backend_draws_them(previews):
    backend, seen = PreviewBackend(previews), []
    result = edit(backend, state(1.0), "smiling", target=2, on_preview=seen.append)
    assert backend.previewed == len(seen) == (result.steps if previews else 0)


class FarBackend(LineBackend):
    """``LineBackend`` whose codes are as far from real ones as they smile (``latent_distance``), or,
    with ``band``, far (5) only inside it and near (1) elsewhere."""

    def __init__(self, band: tuple[float, float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.band = band

    def latent_distance(self, w):
        if self.band is None:
            return w[0, 0].abs()
        return torch.tensor(5.0 if self.band[0] < float(w[0, 0]) < self.band[1] else 1.0)


@pytest.mark.parametrize("smiling, limit", [(1.0, 2.0), (2.0, 3.0)])  # the limit: 2, or 1.5 × the start's
def test_a_walk_that_leaves_the_space_of_real_faces_gives_up_unreachable(smiling, limit):
    result = edit(FarBackend(), state(smiling), "smiling", target=5)
    assert result.reason == "unreachable" and not result.reached
    assert result.degrees["smiling"] == int(limit)
    walked = [float(f.latent[0, 0]) for f in result.frames]
    assert max(walked[:-1]) == limit and walked[-1] == limit + 0.125  # stopped at the first step past it
    assert result.steps == round((limit - smiling) * 8) + 1


def test_a_walk_jumps_across_a_stretch_beyond_the_distance_limit_and_gives_up_where_no_jump_lands():
    across = edit(FarBackend(band=(2.1, 2.9)), state(1.0), "smiling", target=4)
    assert across.reached and across.degrees["smiling"] == 4
    assert sum(2.1 < float(f.latent[0, 0]) < 2.9 for f in across.frames) == 1  # the step that found it
    assert any(float(f.latent[0, 0]) == 3.0 for f in across.frames)  # a whole step from 2, over it
    stuck = edit(FarBackend(band=(2.1, 3.9)), state(1.0), "smiling", target=4)  # every jump lands inside
    assert stuck.reason == "unreachable" and stuck.degrees["smiling"] == 2
