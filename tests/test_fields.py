"""Pieces of field training that can be checked exactly: the linear baseline and the rendered pairs."""

import torch

from chatedit.attributes import attribute_names
from chatedit.tools.builtin.fields import FieldConfig, Pairs, fit_degree_offsets, fit_linear, fit_pairs, mahalanobis
from chatedit.tools.builtin.models import Generator, LatentField
from chatedit.tools.builtin.renderer import IDENTITY, is_plausible, sample_portraits


def test_linear_step_raises_the_regressed_value_by_one_degree():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(2000, 16, generator=g)
    mixing = torch.randn(16, 3, generator=g)
    values = codes @ mixing + 2.0
    linear = fit_linear(codes, values, ridge=1e-6)
    for a in range(3):
        moved = (codes[:5] + linear(a, codes[:5])) @ mixing + 2.0
        assert torch.allclose(moved[:, a] - values[:5, a], torch.ones(5), atol=1e-3)
        down = (codes[:5] + linear(a, codes[:5], -1)) @ mixing + 2.0
        assert torch.allclose(down[:, a] - values[:5, a], -torch.ones(5), atol=1e-3)


def test_degree_offsets_are_measured_with_the_other_attributes_held():
    """Glasses here come with age (as in the renderer's world): the mean code of the faces with
    glasses 4 also carries their older age, the fitted offset must not."""
    g = torch.Generator().manual_seed(0)
    n, w_dim = 4000, 8
    truth = torch.randn(2, 6, w_dim, generator=g)
    age = torch.randint(6, (n,), generator=g)
    glasses = (age + torch.randint(-1, 2, (n,), generator=g)).clamp(0, 5)
    degrees = torch.stack([glasses, age], 1)
    codes = truth[0, glasses] + truth[1, age] + 0.01 * torch.randn(n, w_dim, generator=g)
    offsets = fit_degree_offsets(codes, degrees)
    w = torch.zeros(3, w_dim)
    jump = offsets(0, w, 3, 4)
    assert jump.shape == w.shape
    assert torch.allclose(jump[0], truth[0, 4] - truth[0, 3], atol=0.02)
    naive = codes[glasses == 4].mean(0) - codes[glasses == 3].mean(0)
    assert (naive - (truth[0, 4] - truth[0, 3])).norm() > 0.3  # the class means mix age in


def test_a_field_learns_up_and_down_steps_that_are_not_each_others_negative():
    # a scale that bends back: from every point, one degree up and one degree down both move along
    # the second axis (as thicker frames do from eyeglasses degree 4), with opposite first axes
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(512, 4, generator=g)
    sign = torch.where(torch.rand(512, generator=g) < 0.5, 1.0, -1.0)
    other = codes + sign[:, None] * torch.tensor([1.0, 0, 0, 0]) + torch.tensor([0, 0.5, 0, 0])
    field = LatentField(w_dim=4, hidden=32)
    field.base.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]))  # the linear start: one line
    fit_pairs(field, Pairs(codes, other, sign), FieldConfig(fit_steps=400, lr=3e-3), g)
    with torch.no_grad():
        up, down = field(codes[:8], 1), field(codes[:8], -1)
    assert torch.allclose(up, torch.tensor([1.0, 0.5, 0, 0]).expand(8, 4), atol=0.1)
    assert torch.allclose(down, torch.tensor([-1.0, 0.5, 0, 0]).expand(8, 4), atol=0.1)
    mixed = field(codes[:2], torch.tensor([1.0, -1.0]))  # a direction per row
    assert torch.allclose(mixed, torch.stack([up[0], down[1]]))


def test_world_rules_for_beards():
    people = sample_portraits(4, 0)
    identity = people.identity.clone()
    identity[:, IDENTITY.index("masc")] = torch.tensor([0.9, 0.9, 0.9, 0.1])
    attrs = torch.zeros(4, len(attribute_names()))
    beard, age = attribute_names().index("beard"), attribute_names().index("age")
    attrs[:, beard], attrs[:, age] = torch.tensor([3.0, 1, 3, 1]), torch.tensor([3.0, 1, 1, 3])
    assert is_plausible(identity, attrs).tolist() == [True, True, False, False]


def test_mahalanobis_is_zero_at_the_mean_and_grows_away_from_it():
    gen = Generator(w_dim=4, channels=(8, 8))
    gen.w_mean.copy_(torch.tensor([1.0, 0, 0, 0]))
    d = mahalanobis(gen, torch.tensor([[1.0, 0, 0, 0], [1.0, 2, 0, 0], [1.0, 4, 0, 0]]))
    assert d[0] < 1e-3 < d[1] < d[2]
