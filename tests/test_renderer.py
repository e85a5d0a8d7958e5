"""The procedural world: deterministic, and each degree looks like what its name says."""

import torch

from chatedit.attributes import attribute_names, load_attributes, most_allowed
from chatedit.tools.builtin.renderer import (IDENTITY, PIXEL, RESOLUTION, Portraits, is_plausible, landmarks,
                                              render, sample_portraits)


def _row(smiling=1.0, age=3.0, **values) -> torch.Tensor:
    """One row of attribute values (1, A) in the vocabulary's column order; unnamed ones 0 (an
    adult with a faint smile unless said otherwise)."""
    values = {"smiling": smiling, "age": age, **values}
    return torch.tensor([[float(values.get(name, 0.0)) for name in attribute_names()]])


def _person(attribute: str, values, seed=3, **fixed) -> torch.Tensor:
    """One adult man rendered with ``attribute`` at each of ``values`` and the others held."""
    base = sample_portraits(1, seed)
    identity = base.identity.clone()
    identity[0, IDENTITY.index("masc")] = 0.9
    rows = _row(**fixed).repeat(len(values), 1)
    rows[:, attribute_names().index(attribute)] = torch.tensor(values, dtype=torch.float32)
    return render(Portraits(identity.repeat(len(values), 1), base.scene.repeat(len(values), 1), rows))


def _box(y0, y1, x0, x1):
    """Pixel slice for a box given in [-1, 1] coordinates."""
    to = lambda v: int((v + 1) / PIXEL)  # noqa: E731
    return slice(to(y0), to(y1)), slice(to(x0), to(x1))


def test_vocabulary_has_five_attributes_with_six_degrees():
    attributes = load_attributes()
    assert [a.name for a in attributes] == ["bangs", "eyeglasses", "beard", "smiling", "age"]
    assert all(len(a.degrees) == 6 for a in attributes)
    assert "sunglasses" in attributes[1].degrees[5] and "rimless" in attributes[1].degrees[1]


def test_same_seed_same_pixels_other_seed_other_face():
    a, b = render(sample_portraits(4, 11)), render(sample_portraits(4, 11))
    c = render(sample_portraits(4, 12))
    assert a.shape == (4, 3, RESOLUTION, RESOLUTION)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05
    assert a.min() >= 0 and a.max() <= 1


def test_looks_hold_steady_near_a_degree_and_change_between_degrees():
    for name in attribute_names():
        imgs = _person(name, [2.0, 2.15, 3.0])
        near = (imgs[0] - imgs[1]).abs().mean()
        far = (imgs[0] - imgs[2]).abs().mean()
        assert far > 0.0005, name
        assert near < 0.25 * far, name


def test_bangs_cover_more_forehead_with_each_degree():
    imgs = _person("bangs", [0, 1, 2, 3, 4, 5])
    ys, xs = _box(-0.45, -0.05, -0.12, 0.12)  # the forehead between the brows and the hairline
    skin = imgs[0][:, ys, xs]
    covered = [((img[:, ys, xs] - skin).abs().sum(0) > 0.15).float().mean().item() for img in imgs]
    assert all(b > a for a, b in zip(covered, covered[1:])), covered


def test_glasses_go_from_none_to_dark_sunglasses():
    imgs = _person("eyeglasses", [0, 1, 2, 3, 4, 5])
    eye_region = _box(-0.15, 0.05, -0.35, 0.35)
    brightness = [img[:, eye_region[0], eye_region[1]].mean().item() for img in imgs]
    changed = [(imgs[d] - imgs[0]).abs().mean().item() for d in range(6)]
    assert all(c > 0.001 for c in changed[1:])  # even rimless glasses show
    assert brightness[2] > brightness[3]  # thick frames are darker than thin ones
    assert brightness[4] < brightness[3] - 0.02 and brightness[5] < brightness[3] - 0.02  # sunglasses


def test_beard_grows_and_lengthens():
    imgs = _person("beard", [0, 1, 2, 3, 4, 5])
    jaw = _box(0.35, 0.65, -0.4, 0.4)
    below_chin = _box(0.72, 0.9, -0.15, 0.15)
    jaw_change = [(img - imgs[0])[:, jaw[0], jaw[1]].abs().mean().item() for img in imgs]
    chin_change = [(img - imgs[3])[:, below_chin[0], below_chin[1]].abs().mean().item() for img in imgs]
    assert jaw_change[1] < jaw_change[2] < jaw_change[3]
    assert chin_change[5] > chin_change[4] > 0.01


def test_a_full_short_beard_adds_the_moustache_a_short_one_lacks():
    base = sample_portraits(1, 3)
    identity = base.identity.clone()
    identity[0, IDENTITY.index("masc")] = 0.9
    rows = torch.cat([_row(beard=b, smiling=0.0) for b in (0.0, 2.0, 3.0)])
    people = Portraits(identity.repeat(3, 1), base.scene.repeat(3, 1), rows)
    mouth_y = landmarks(people)["mouth_y"][0].item()
    lip = _box(mouth_y - 0.045, mouth_y - 0.025, -0.05, 0.05)   # between the nose and the mouth
    brightness = [img[:, lip[0], lip[1]].mean().item() for img in render(people)]
    assert abs(brightness[1] - brightness[0]) < 0.01 < brightness[1] - brightness[2]


def test_a_fringe_shades_the_forehead_under_it():
    """Where a fringe ends shows even on fair hair over fair skin: its shadow darkens the skin below."""
    base = sample_portraits(1, 3)
    identity = base.identity.clone()
    for name, value in (("masc", 0.1), ("hair_dark", 0.0), ("hair_red", 0.0), ("skin_tone", 0.0)):
        identity[0, IDENTITY.index(name)] = value
    rows = torch.cat([_row(age=2.0), _row(bangs=3.0, age=2.0)])
    imgs = render(Portraits(identity.repeat(2, 1), base.scene.repeat(2, 1), rows))
    changed = (imgs[1] - imgs[0]).abs().mean(0)[:, 56:72].mean(1)   # per row, across the middle of the forehead
    edge = int(changed.argmax())   # the fringe's dark edge
    assert changed[edge + 2] > 0.03   # two pixels below it the skin is still in shadow


def test_smile_opens_the_mouth_only_at_the_top_degrees():
    imgs = _person("smiling", [0, 1, 2, 3, 4, 5])
    mouth = _box(0.25, 0.5, -0.2, 0.2)
    bright_teeth = [(img[:, mouth[0], mouth[1]].min(0).values > 0.85).float().sum().item() for img in imgs]
    dark_cavity = [(img[:, mouth[0], mouth[1]].max(0).values < 0.35).float().sum().item() for img in imgs]
    assert bright_teeth[3] == 0 and bright_teeth[4] > 5
    assert dark_cavity[5] > max(dark_cavity[:5]) + 10


def test_age_greys_the_hair_and_lines_the_face():
    imgs = _person("age", [0, 1, 2, 3, 4, 5])
    top = _box(-0.75, -0.4, -0.5, 0.5)
    saturation = [(img[:, top[0], top[1]].max(0).values - img[:, top[0], top[1]].min(0).values).mean().item() for img in imgs]
    assert saturation[5] < saturation[3] - 0.03 < saturation[2] - 0.03  # grey hair has no colour
    assert (imgs[0] - imgs[2]).abs().mean() > 0.005  # a child's proportions differ from an adult's


def test_sampled_faces_carry_real_world_correlations():
    people = sample_portraits(4000, 5)
    degrees = people.degrees()
    names = attribute_names()
    beard, age, glasses = degrees[:, names.index("beard")], degrees[:, names.index("age")], degrees[:, names.index("eyeglasses")]
    masc = people.identity[:, IDENTITY.index("masc")]
    assert (beard[age == 0] == 0).all()  # children have no beards
    assert (beard[masc < 0.5] == 0).all() and (beard[masc > 0.5] > 0).float().mean() > 0.4
    assert (glasses == 0).float().mean() > 0.4
    for d in range(6):  # every degree of every attribute occurs
        assert ((degrees == d).sum(0) > 30).all()


def test_the_editors_limits_are_the_worlds_own():
    """attributes.yaml's limits (what the editor keeps to) say what the renderer's people can be."""
    man = torch.full((1, len(IDENTITY)), 0.5)
    man[0, IDENTITY.index("masc")] = 0.9
    names = attribute_names()
    for age in range(6):
        allowed, because = most_allowed("beard", {"age": age})
        for beard in range(6):
            values = torch.zeros(1, len(names))
            values[0, names.index("age")], values[0, names.index("beard")] = age, beard
            assert bool(is_plausible(man, values)[0]) == (beard <= allowed), (age, beard)
        assert (because is None) == (allowed == 5)
