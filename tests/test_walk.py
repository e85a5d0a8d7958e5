"""The walk's stopping rule, failure reasons, directions and streaming, on a transparent backend.

``LineBackend`` is a world where the latent *is* the attribute values: the predictor reads them
back exactly, so every expectation below follows from the walk's rules alone.
"""

from dataclasses import dataclass

import pytest
import torch

from chatedit.tools.walk import FaceState, edit, resolve_target, walk


@dataclass
class LineReading:
    degrees: torch.Tensor
    expected: torch.Tensor


class LineBackend:
    attributes = ("smiling", "age")

    def __init__(self, wall: float = 99.0, speed: float = 1.0):
        self.wall, self.speed, self.calls = wall, speed, 0

    def generate(self, w):
        image = torch.zeros(w.shape[0], 3, 4, 4)
        image[:, 0, 0, :2] = w
        return image

    def predict(self, image):
        self.calls += 1
        values = image[:, 0, 0, :2].clamp(0, 5)
        return LineReading(values.round().long(), values)

    def identity(self, image):
        return torch.ones(image.shape[0], 1)

    def step(self, method, attribute, w, direction):
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
