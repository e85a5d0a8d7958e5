"""The StyleGAN2 backend follows Talk-to-Edit's procedure, checked against reference values computed
the way Talk-to-Edit's code computes them (written here from reading it, not imported).

- The editing loop (``BaseModel.continuous_editing_with_target`` with
  ``FieldFunctionModel.modify_latent_code_bidirection``): from a W code repeated over the W+ rows,
  each unit step evaluates the field at the current W code, maps it through the mapping MLP without
  its PixelNorm minus the same map of zeros, and adds ``alpha`` (±1) times that to the W code and
  to the first ``replaced_layers`` rows. The walk's substeps must be exactly those unit steps.
- The predictor's input (``models/utils.transform_image``) and the evaluation script's
  (``utils/numerical_metrics.load_image_predictor`` on PNGs written by ``postprocess``).
- Photos are inverted to one W code (``utils/inversion_utils.inversion`` optimises a single W),
  and new faces are sampled with no truncation (``BaseModel.truncation = 1.0``).

Random weights (the tiny files of the backend tests): the procedure, not the quality.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from chatedit.tools.stylegan2 import talk_to_edit as tte

from test_stylegan2_backend import STYLE, load, weights  # noqa: F401  (tiny random Talk-to-Edit files, a fixture)

SMILING = 3  # our attribute index


def their_editing_loop(field, mapping_without_norm, w, n_latent, replaced_layers, alpha, steps):
    """Talk-to-Edit's loop over unit steps from a W code w (B, C); returns the W+ code it draws."""
    edited = w.unsqueeze(1).repeat(1, n_latent, 1)
    for _ in range(steps):
        value = field(w)
        offset_w = mapping_without_norm(torch.zeros_like(value))
        delta_w = mapping_without_norm(value) - offset_w
        edited = edited.clone()
        for layer in range(replaced_layers):
            edited[:, layer, :] += alpha * delta_w
        w = w + alpha * delta_w
    return edited


def walk_substeps(backend, latent, attribute, direction, substeps):
    """What the walk adds per ordinary stride: ``1 / capabilities.substeps`` of the backend's step."""
    for _ in range(substeps):
        latent = latent + (1.0 / backend.capabilities.substeps) * backend.step("field", attribute, latent, direction)
    return latent


@pytest.mark.parametrize("direction", [1, -1], ids=["up", "down"])
@torch.no_grad()
def test_a_three_step_field_walk_each_way_is_talk_to_edits_loop(weights, direction):  # noqa: F811
    backend = load(weights)
    n, replaced = backend.generator.n_latent, backend.replaced_layers
    w_plus = backend.sample(4)  # a W code on every row, as Talk-to-Edit edits
    reference = their_editing_loop(backend.fields[SMILING], backend.generator.style[1:], w_plus[:, 0], n, replaced,
                                   alpha=float(direction), steps=3)
    # default: 8 unit steps per degree, one per substep; three substeps are three of their steps
    assert backend.capabilities.substeps == 8 and backend.unit_steps_per_substep == 1
    ours = walk_substeps(backend, w_plus, SMILING, direction, substeps=3)
    assert torch.allclose(ours, reference, atol=1e-5), (ours - reference).abs().max()
    assert not torch.allclose(ours, w_plus, atol=1e-3)  # it moved
    # 24 unit steps per degree: one substep is three of their steps, each re-evaluating the field
    finer = load(weights, field_steps_per_degree=24)
    assert finer.capabilities.substeps == 8 and finer.unit_steps_per_substep == 3
    one_substep = walk_substeps(finer, w_plus, SMILING, direction, substeps=1)
    assert torch.allclose(one_substep, reference, atol=1e-5), (one_substep - reference).abs().max()
    # the scaled form (one step's change times three) is not their loop: the field changes along the way
    one_step = their_editing_loop(backend.fields[SMILING], backend.generator.style[1:], w_plus[:, 0], n, replaced,
                                  alpha=float(direction), steps=1)
    scaled = w_plus + 3 * (one_step - w_plus)
    assert (scaled - reference).abs().max() > 1e-3


def test_field_steps_per_degree_make_the_walks_substeps_of_whole_unit_steps(weights):  # noqa: F811
    for steps, per_substep in [(8, 1), (16, 2), (24, 3)]:
        backend = load(weights, field_steps_per_degree=steps)
        assert backend.unit_steps_per_substep == per_substep and backend.capabilities.substeps == 8
    for bad in (0, 4, 12, 2.5, True):
        with pytest.raises(ValueError, match=f"field_steps_per_degree must be a multiple.*got {bad!r}"):
            load(weights, field_steps_per_degree=bad)


def their_transform_image(generated, resize):
    """``models/utils.transform_image``: generator output in [-1, 1] → the predictor's input."""
    image = (generated + 1) * 255 / 2
    image = torch.clamp(image + 0.5, 0, 255)
    image = image / 255.0
    if resize:
        image = F.interpolate(image, (128, 128), mode="area")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (image - mean) / std


def their_eval_input(generated):
    """``postprocess`` to an 8-bit PNG, then ``numerical_metrics.load_image_predictor`` reading it."""
    png = np.clip((generated.numpy() + 1) * 255 / 2 + 0.5, 0, 255).astype(np.uint8)
    image = torch.from_numpy(png.astype(np.float32) / 255)
    if image.shape[-1] > 128:
        image = F.interpolate(image, (128, 128), mode="area")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (image - mean) / std


@pytest.mark.parametrize("size", [128, 256], ids=["128px", "resized"])
def test_predictor_input_is_talk_to_edits_transform_image(size):
    # generator output overshoots [-1, 1] a little, as real outputs do
    generated = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2.4 - 1.2
    reference = their_transform_image(generated, resize=size != 128)
    assert torch.allclose(tte.predictor_input((generated + 1) / 2), reference, atol=1e-5)
    # from a [0, 1] image (what ``generate`` returns) only pixels drawn below black differ, by half a level
    clamped = tte.predictor_input(((generated + 1) / 2).clamp(0, 1))
    if size == 128:
        below_black = generated < -1
        assert torch.allclose(clamped[~below_black], reference[~below_black], atol=1e-5)
        assert (clamped - reference).abs().max() <= 0.5 / 255 / 0.224 + 1e-5
    # the evaluation predictor reads the saved 8-bit PNG
    evaluated = tte.eval_predictor_input(((generated + 1) / 2).clamp(0, 1))
    assert torch.allclose(evaluated, their_eval_input(generated), atol=1e-5)


@torch.no_grad()
def test_the_backends_readings_go_through_those_inputs(weights):  # noqa: F811
    backend = load(weights)
    generated = backend.generator.synthesis(backend.sample(2))  # (1, 3, 32, 32) in about [-1, 1]
    image = backend.generate(backend.sample(2))
    reading = backend.predict(image)
    theirs = tte.our_logits(backend.predictor(their_transform_image(generated.clamp(-1, 1), resize=True)))
    assert torch.allclose(reading.probs, theirs.softmax(-1), atol=1e-4)
    graded = backend.eval_read(image)
    assert torch.equal(graded, tte.read_degrees(backend.eval_predictor(their_eval_input(generated.clamp(-1, 1)))))


def test_a_photo_is_inverted_to_one_w_code_and_w_plus_is_there_when_asked(weights):  # noqa: F811
    backend = load(weights)
    assert backend.inversion == "w"
    photo = backend.generate(backend.sample(11))[0]
    start = ((backend.generate(backend.sample(11) * 0 + backend.w_mean[:, None]) - photo) ** 2).mean()
    seen = []
    code = backend.encode(photo[None], refine_steps=60, on_progress=lambda step, image: seen.append(step))
    assert code.shape == (1, backend.generator.n_latent, STYLE) and seen == [0, 10, 20, 30, 40, 50]
    assert torch.equal(code, code[:, :1].expand_as(code))  # every row the same W code
    assert ((backend.generate(code) - photo) ** 2).mean() < start  # it moved towards the photo
    free = backend.encode(photo[None], refine_steps=20, inversion="wplus")
    assert not torch.equal(free, free[:, :1].expand_as(free))  # rows free to differ
    assert torch.equal(load(weights, inversion="wplus").encode(photo[None], refine_steps=20), free)
    with pytest.raises(ValueError, match="inversion must be one of w, wplus, got 'z'"):
        backend.encode(photo[None], refine_steps=1, inversion="z")
    with pytest.raises(ValueError, match="inversion must be one of w, wplus, got 'W'"):
        load(weights, inversion="W")


def test_pivotal_tuning_pivots_on_the_w_code(weights):  # noqa: F811
    tuned = load(weights, pti_steps=3, pti_lr=3e-3)
    photo = tuned.generate(tuned.sample(12))[0]
    latent = tuned.encode(photo[None], refine_steps=10)
    n = tuned.generator.n_latent
    pivot = latent[:, :n]
    assert latent.shape == (1, n + 1, STYLE) and torch.equal(pivot, pivot[:, :1].expand_as(pivot))
    assert torch.equal(pivot, load(weights).encode(photo[None], refine_steps=10))  # the plain W inversion


@torch.no_grad()
def test_new_faces_are_sampled_without_truncation_unless_asked(weights):  # noqa: F811
    backend = load(weights)
    assert backend.truncation == 1.0
    z = torch.randn(1, STYLE, generator=torch.Generator().manual_seed(7))
    w = backend.generator.mapping(z)
    assert torch.equal(backend.sample(7), w[:, None].expand(1, backend.generator.n_latent, STYLE))
    truncated = load(weights, truncation=0.7).sample(7)[:, 0]
    assert torch.allclose(truncated, backend.w_mean + 0.7 * (w - backend.w_mean), atol=1e-6)
    for bad in (0, 1.5, -0.2):
        with pytest.raises(ValueError, match=f"truncation must be above 0 and at most 1.*{bad}"):
            load(weights, truncation=bad)


def test_the_new_settings_are_stylegan2_flags_listed_by_chatedit_backends():
    from chatedit import cli
    from chatedit.tools import registry

    args = cli.build_parser().parse_args(["serve", "--backend", "stylegan2", "--inversion", "wplus",
                                          "--truncation", "0.7", "--field-steps", "16"])
    assert cli._backend_options(args) == {"inversion": "wplus", "truncation": 0.7, "field_steps": 16}
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--backend", "stylegan2", "--inversion", "z"])
    listed = {o["flag"]: o["default"] for o in registry.describe("stylegan2")["options"]}
    assert listed["--inversion"] == "w" and listed["--truncation"] == 1.0 and listed["--field-steps"] == 8


def test_bench_edit_inverts_each_way(weights):  # noqa: F811
    from chatedit import bench_edit

    backend = load(weights)
    by_w = bench_edit.inverted_faces(backend, 1, backend.eval_read, refine_steps=5, inversion="w")
    by_w_plus = bench_edit.inverted_faces(backend, 1, backend.eval_read, refine_steps=5, inversion="wplus")
    assert torch.equal(by_w.codes, by_w.codes[:, :1].expand_as(by_w.codes))
    assert not torch.equal(by_w_plus.codes, by_w_plus.codes[:, :1].expand_as(by_w_plus.codes))
    results = {name: bench_edit.run(backend, faces=1, timing_edits=1, bench=faces)
               for name, faces in (("w", by_w), ("wplus", by_w_plus))}
    table = bench_edit.by_inversion_markdown(results)
    assert "### W inversion" in table and "### W+ inversion" in table
