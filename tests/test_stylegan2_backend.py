"""The StyleGAN2 backend end to end on random weights in Talk-to-Edit's published file layout.

A ``pretrained_models`` folder is written the way Talk-to-Edit publishes it (narrow widths keep
it fast; the layouts are the published ones, checked in the loader tests), loaded through
``StyleGAN2Backend.load``, and a face is inverted, walked and compared for identity. Random
weights prove the plumbing, not the quality: no degree is asserted, only that the tools run.
Photos come in through ``intake`` (found, aligned); insightface is a stand-in module here.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from chatedit.editor import Editor
from chatedit.images import from_pil
from chatedit.tools.align import FaceMarks, NoFaceFound, align_face, aligned_points
from chatedit.state import DialogState
from chatedit.tools.stylegan2 import talk_to_edit as tte
from chatedit.tools.stylegan2.backend import FILES, StyleGAN2Backend
from chatedit.tools.walk import FaceState, edit

from test_align import face, install_fake_insightface, photo, true_points
from test_stylegan2_generator import save_training_dict, tiny_state_dict
from test_talk_to_edit_models import (arcface_layout, field_layout, predictor_layout, random_state,
                                      tiny_arcface_config, tiny_predictor_config, TINY_ARCFACE, TINY_PREDICTOR)

STYLE = 16


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained_models")
    names = FILES[128]
    sd = tiny_state_dict(size=32, style_dim=STYLE, n_mlp=2, channels=[16, 16, 8, 8])  # small and fast
    save_training_dict(root / names["generator"], sd, latent_avg=torch.zeros(1, STYLE))
    (root / names["fields"]).mkdir()
    for i, spec in enumerate(tte.ATTRIBUTES):
        torch.save(random_state(field_layout(num_layer=2, dim=STYLE, hidden=32), seed=i),
                   root / names["fields"] / spec.field_file)
    torch.save({"state_dict": random_state(predictor_layout(**TINY_PREDICTOR)), "epoch": 20},
               root / names["predictor"])
    torch.save({"state_dict": random_state(predictor_layout(**TINY_PREDICTOR), seed=9), "epoch": 20},
               root / names["eval_predictor"])
    torch.save({f"module.{k}": v for k, v in random_state(arcface_layout(**TINY_ARCFACE)).items()},
               root / names["arcface"])
    return root


def load(root, **options):
    return StyleGAN2Backend.load(root, device="cpu", field_config={"num_layers": 2, "latent_dim": STYLE,
                                                                  "hidden_dim": 32},
                                 predictor_config=tiny_predictor_config(), arcface_config=tiny_arcface_config(),
                                 **options)


def test_a_face_is_sampled_walked_and_compared_through_the_walk(weights):
    backend = load(weights)
    w = backend.sample(3)
    assert w.shape == (1, backend.generator.n_latent, STYLE) and torch.equal(w, backend.sample(3))
    image = backend.generate(w)
    assert image.shape == (1, 3, 32, 32) and 0 <= image.min() and image.max() <= 1
    assert torch.equal(image, backend.generate(w))  # the same latent draws the same face every turn
    delta = backend.step("field", 3, w)
    rows = delta.abs().sum(-1)[0]
    assert rows[: backend.replaced_layers].gt(0).all() and rows[backend.replaced_layers:].eq(0).all()
    # published fields are walked backwards to go down: one unit step per substep, so the step up negated
    assert torch.allclose(backend.step("field", 3, w, -1), -delta, atol=1e-5)
    face = FaceState(w, backend.identity(image))
    smile = int(backend.predict(image).degrees[0, 3])
    result = edit(backend, face, "smiling", target=0 if smile >= 3 else 5, max_steps=6)
    assert result.steps >= 1 and result.reason in (None, "unreachable", "max_steps")
    assert 0.0 <= result.identity_similarity <= 1.0
    with pytest.raises(ValueError, match="linear"):
        backend.step("linear", 0, w)


def test_a_photo_is_inverted_and_edited_through_the_editor(weights):
    backend = load(weights)
    target = backend.generate(backend.sample(11))[0]
    seen = []
    # a single W code (the default) fits a tiny random generator slowly: its first steps may fit worse
    w = backend.encode(target[None], refine_steps=60, on_progress=lambda step, image: seen.append(step))
    start = ((backend.generate(backend.w_mean[:, None].expand_as(w)) - target) ** 2).mean()
    assert ((backend.generate(w) - target) ** 2).mean() < start  # the inversion moved towards the photo
    assert seen == [0, 10, 20, 30, 40, 50]
    editor = Editor(backend, refine_steps=5, max_steps=4)
    state = DialogState()
    editor.upload(state, target)
    outcome = editor.edit(state, "age", change=1)
    assert state.current.latent.shape == w.shape and isinstance(outcome.text, str)


def test_missing_files_are_listed(tmp_path):
    with pytest.raises(FileNotFoundError, match="stylegan2_128.pt"):
        StyleGAN2Backend.load(tmp_path)


def test_the_agent_runs_on_the_stylegan2_backend_by_name(weights, monkeypatch):
    from chatedit.agent import build_agent

    with pytest.raises(FileNotFoundError, match="needs --weights DIR"):
        build_agent("stylegan2")
    tiny = load(weights)  # the published loader with the tiny widths; build_agent passes only the folder
    monkeypatch.setattr(StyleGAN2Backend, "from_options", classmethod(lambda cls, options: tiny))
    agent = build_agent("stylegan2", weights=str(weights))
    session, outcome = agent.open(seed=5)
    assert outcome.image.shape == (3, 32, 32)
    reply = agent.respond(session.id, "describe")
    assert reply.degrees == session.state.current.degrees


def test_bench_edit_runs_on_sampled_faces_graded_by_the_eval_predictor(weights):
    from chatedit import bench_edit

    backend = load(weights)
    assert backend.eval_predictor is not None
    result = bench_edit.run(backend, faces=2, timing_edits=2,
                            bench=bench_edit.sampled_faces(backend, 2, backend.eval_read))
    assert set(result) >= {"field", "ms_per_step", "ms_per_edit"} and "linear" not in result
    assert all(result["field"][a]["edits"] == 2 for a in backend.attributes)
    assert result["backend"] == "stylegan2" and "(no baseline)" in bench_edit.markdown(result)


# --------------------------------------------------------------------------- photos in, identity out


@pytest.fixture(scope="module")
def portrait():
    """A photo larger than the generator's 32 px: a render three times enlarged on a grey canvas,
    with its true eyes and mouth corners."""
    from chatedit.tools.builtin.data import render_set
    from chatedit.tools.builtin.renderer import landmarks

    faces = render_set(10, 1, seed=5)
    render = Image.fromarray(faces.images[1].permute(1, 2, 0).numpy(), "RGB")
    return photo(render, true_points(landmarks(faces.portraits), 1), 3.0, 0.0)


def test_a_photo_is_found_aligned_inverted_edited_and_compared(weights, portrait):
    backend = load(weights)
    picture, points = portrait
    image = backend.intake(picture)
    assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1
    # the FFHQ crop of the face (as from its true landmarks), not the middle of the photo
    truth = from_pil(align_face(picture, FaceMarks(*map(tuple, points), box=(0, 0, 1, 1), score=1.0), 32), 32)
    centre = from_pil(picture, 32)
    assert ((image - truth) ** 2).mean() < ((image - centre) ** 2).mean() / 4
    editor = Editor(backend, refine_steps=5, max_steps=4)
    state = DialogState()
    editor.upload(state, image)
    editor.edit(state, "smiling", change=1)
    similarity = editor.identity_similarity(state)
    assert 0.0 <= similarity <= 1.0 and backend.identity_model == "Talk-to-Edit's ArcFace ResNet-18"


def test_identity_uses_insightfaces_arcface_when_its_models_are_given(weights, monkeypatch, tmp_path):
    class Recognition:
        model_file = str(tmp_path / "w600k_r50.onnx")
        input_size = (112, 112)

        def get_feat(self, crop):
            return crop.reshape(-1, 3).mean(0)[None] + 1.0  # (1, 3): a colour-dependent embedding

    faces = []
    calls = install_fake_insightface(monkeypatch, faces, recognition=Recognition())
    (tmp_path / "det_10g.onnx").write_bytes(b"")
    (tmp_path / "w600k_r50.onnx").write_bytes(b"")
    backend = load(weights, face_models=tmp_path)
    assert backend.identity_model == "insightface ArcFace (w600k_r50.onnx)"
    assert calls["name"] == [str(tmp_path.resolve())] and "recognition" in calls["allowed_modules"][0]
    image = backend.generate(backend.sample(4))
    # no face found in a generated image: cropped where an aligned face's points are
    missed = backend.identity(image)
    assert missed.shape == (1, 3) and torch.allclose(missed.norm(dim=-1), torch.ones(1))
    assert np.allclose(calls["norm_crop"][-1], aligned_points(32))
    # a face found: insightface's own embedding of it
    faces.append(face((2, 2, 30, 30), [[12, 15], [20, 15], [16, 19], [13, 24], [19, 24]], embedding=[0.0, 3.0, 4.0]))
    assert torch.allclose(backend.identity(image), torch.tensor([[0.0, 0.6, 0.8]]))
    assert len(calls["norm_crop"]) == 1


def test_without_face_models_a_faceless_photo_is_refused_by_opencv(weights):
    backend = load(weights)
    with pytest.raises(NoFaceFound, match="couldn't find a face"):
        backend.intake(Image.new("RGB", (300, 300), (90, 120, 150)))
