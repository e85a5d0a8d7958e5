"""The shipped built-in models do their jobs on faces they never saw (seeds far from training)."""

import pytest
import torch

from chatedit.attributes import attribute_names
from chatedit.tools.builtin.backend import BuiltinBackend
from chatedit.tools.builtin.data import render_set
from chatedit.tools.builtin.loading import load_builtin
from chatedit.tools.builtin.renderer import render, sample_portraits
from chatedit.tools.walk import FIELD_PHASES, FaceState, Nudge, Repair, edit


@pytest.fixture(scope="module")
def backend():
    return BuiltinBackend.load(device="cpu")


def _psnr(a, b):
    return (-10 * torch.log10(((a - b) ** 2).mean(dim=(1, 2, 3)))).mean().item()


def test_models_load_once_per_process(backend):
    assert load_builtin(device="cpu") is backend.models


def test_new_faces_are_deterministic_and_distinct(backend):
    a, b, c = backend.sample(5), backend.sample(5), backend.sample(6)
    assert torch.equal(a, b)
    assert (backend.generate(a) - backend.generate(c)).abs().mean() > 0.03


def test_reconstruction_and_upload_refinement(backend):
    images = render(sample_portraits(12, 777_001))
    plain = backend.generate(backend.encode(images))
    refined = backend.generate(backend.encode(images, refine_steps=20))
    assert _psnr(plain, images) > 24.0
    assert _psnr(refined, images) > _psnr(plain, images)


def test_predictor_reads_degrees_of_fresh_renders(backend):
    data = render_set(24, 2, seed=777_002)
    images = data.images.float() / 255
    read = backend.predict(images).degrees
    exact = (read == data.degrees()).float().mean().item()
    within = ((read - data.degrees()).abs() <= 1).float().mean().item()
    assert exact > 0.85 and within > 0.97


def test_edits_are_steered_by_two_predictors_that_each_read_renders(backend):
    data = render_set(24, 2, seed=777_003)
    images = data.images.float() / 255
    models = backend.models
    probs = [model(images).softmax(-1) for model in (models.predictor, models.second_predictor)]
    for p in probs:  # each one is a reader in its own right
        assert (p.argmax(-1) == data.degrees()).float().mean().item() > 0.85
    assert (probs[0] - probs[1]).abs().max() > 0.1  # two readers, not one twice
    in_float32 = BuiltinBackend(models, "float32")
    assert torch.allclose(in_float32.predict(images).probs, (probs[0] + probs[1]) / 2, atol=1e-6)


def test_bfloat16_draws_and_reads_as_float32_does(backend, monkeypatch):
    """The faster arithmetic may not change what a person sees or what the walk decides on."""
    exact, fast = BuiltinBackend(backend.models, "float32"), BuiltinBackend(backend.models, "bfloat16")
    codes = torch.cat([backend.sample(seed) for seed in range(777_010, 777_022)])
    drawn = exact.generate(codes), fast.generate(codes)
    assert drawn[1].dtype == torch.float32
    assert _psnr(drawn[1], drawn[0]) > 45.0  # 57.6 dB when written
    read = exact.predict(drawn[0]), fast.predict(drawn[0])
    assert (read[0].degrees == read[1].degrees).float().mean() > 0.95
    assert (read[0].expected - read[1].expected).abs().mean() < 0.02
    faces = exact.identity(drawn[0]), fast.identity(drawn[0])
    assert torch.allclose(faces[1].norm(dim=-1), torch.ones(len(codes)), atol=1e-5)
    assert (faces[0] * faces[1]).sum(-1).min() > 0.999

    monkeypatch.setenv("CHATEDIT_PRECISION", "float32")
    assert BuiltinBackend(backend.models).compute_dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        BuiltinBackend(backend.models, "float16")


def test_identity_separates_people_across_attribute_changes(backend):
    data = render_set(20, 3, seed=777_003)
    emb = backend.identity(data.images.float() / 255)
    sim = emb @ emb.T
    same = data.person[:, None] == data.person[None, :]
    off = ~torch.eye(len(sim), dtype=torch.bool)
    assert sim[same & off].mean() > sim[~same].mean() + 0.4


@pytest.mark.parametrize("attribute, change", [("beard", -1), ("age", -1), ("bangs", 2)])
def test_field_walk_moves_one_attribute_and_keeps_the_person(backend, attribute, change):
    names = attribute_names()
    w = backend.sample(29)  # a bearded young man without glasses or bangs
    image = backend.generate(w)
    start = backend.predict(image).degrees[0]
    a = names.index(attribute)
    if not 0 <= int(start[a]) + change <= 5:
        change = -change
    state = FaceState(w, backend.identity(image))
    result = edit(backend, state, attribute, change=change)
    assert result.reached, result.reason
    assert result.degrees[attribute] == int(start[a]) + change
    # graded by the independent evaluation predictor too
    graded = backend.models.eval_predictor(result.image[None]).argmax(-1)[0]
    assert abs(int(graded[a]) - (int(start[a]) + change)) <= 1
    assert result.identity_similarity > 0.8
    again = edit(backend, state, attribute, change=change)
    assert torch.equal(again.latent, result.latent)  # same face, same request, same result


def test_the_polish_makes_edits_read_more_clearly_to_the_independent_grader(backend):
    names = attribute_names()
    gains, identity_loss = [], []
    for seed, attribute in zip(range(400, 410), ["bangs", "smiling", "beard", "eyeglasses", "age"] * 2):
        w = backend.sample(seed)
        image = backend.generate(w)
        a, start = names.index(attribute), int(backend.predict(image).degrees[0, names.index(attribute)])
        state = FaceState(w, backend.identity(image))
        plain, polished = (edit(backend, state, attribute, change=1 if start < 3 else -1, phases=p)
                           for p in ((Repair(), Nudge()), FIELD_PHASES))
        graded = [backend.models.eval_predictor(r.image[None]).softmax(-1)[0, a, r.target] for r in (plain, polished)]
        gains.append(float(graded[1] - graded[0]))
        identity_loss.append(plain.identity_similarity - polished.identity_similarity)
        assert polished.degrees[attribute] == plain.degrees[attribute]
    assert sum(gains) / len(gains) > 0.03 and sum(g > 0 for g in gains) >= 6
    assert max(identity_loss) < 0.03


def test_the_polish_shows_each_step_so_the_preview_never_stalls(backend):
    # the polish runs several gradient steps at the end of an edit: each is a picture on the way
    w = backend.sample(11)
    keep = backend.predict(backend.generate(w)).probs[0]
    shown = []
    polished = backend.polish(w, 0, 3, keep, steps=4, on_preview=shown.append)
    assert len(shown) == 4 and all(s.shape == backend.generate(w)[0].shape for s in shown)
    assert 0 <= min(float(s.min()) for s in shown) and max(float(s.max()) for s in shown) <= 1
    # what was shown last is the step before the final code, not a stale picture
    assert not torch.equal(shown[0], shown[-1])
    assert torch.equal(backend.polish(w, 0, 3, keep, steps=4), polished)  # watching changes nothing
