"""Pivotal Tuning on the StyleGAN2 backend, on the tiny random Talk-to-Edit files of the backend tests.

After an upload's inversion the synthesis weights are tuned on that photo; the latent names its
tune in one extra row. What a user would notice: the photo comes back closer, every photo (and every
new face) is drawn with its own weights however uploads and edits interleave, an edit keeps the
photo's tune, and a tune dropped from memory comes back from disk the same, or the photo is asked for
again. Random weights prove the mechanism, not the quality on real faces.
"""

import pytest
import torch

from chatedit.editor import EditError, Editor, psnr
from chatedit.state import DialogState, Entry
from chatedit.tools.stylegan2.backend import DEFAULT_PTI_STEPS, resolve_pti_steps
from chatedit.tools.keys import join_key
from chatedit.tools.walk import BackendError, FaceState, edit

from test_stylegan2_backend import STYLE, load, weights  # noqa: F401  (tiny random Talk-to-Edit files, a fixture)


W_STEPS, PTI_STEPS, PTI_LR = 20, 20, 3e-3  # a few steps of each, at a rate that moves a tiny generator


def tuned(root, **options):
    return load(root, pti_steps=PTI_STEPS, pti_lr=PTI_LR, **options)


def a_photo(backend, seed: int) -> torch.Tensor:  # an untuned backend
    """(3, 32, 32) in [0, 1], 8-bit like an upload: a generated face with noise the generator cannot draw."""
    face = backend.generate(backend.sample(seed))[0]
    noise = torch.rand(face.shape, generator=torch.Generator().manual_seed(seed))
    return ((0.7 * face + 0.3 * noise) * 255).round() / 255


def key_row(latent: torch.Tensor) -> torch.Tensor:
    return latent[:, -1]


def key_of(latent: torch.Tensor) -> int:
    return join_key(*key_row(latent)[0, :2].tolist())


@pytest.fixture(scope="module")
def photos(weights):  # noqa: F811
    backend = load(weights)
    return a_photo(backend, 11), a_photo(backend, 12)


def test_the_tune_fits_the_photo_closer_than_the_inversion_alone_and_the_fit_is_the_tuned_ones(weights, photos):  # noqa: F811
    photo = photos[0]
    plain, pti = load(weights), tuned(weights)
    before = plain.encode(photo[None], refine_steps=W_STEPS)
    after = pti.encode(photo[None], refine_steps=W_STEPS)
    n = plain.generator.n_latent
    assert before.shape == (1, n, STYLE) and after.shape == (1, n + 1, STYLE)
    assert torch.equal(after[:, :n], before)  # the same pivot: only the generator moved
    fit_before = psnr(plain.generate(before)[0], photo)
    fit_after = psnr(pti.generate(after)[0], photo)
    assert fit_after > fit_before + 1.0, (fit_before, fit_after)
    # the upload's face, and the fit the editor checks, are the tuned generator's drawing
    state = DialogState()
    outcome = Editor(pti, refine_steps=W_STEPS, max_steps=2).upload(state, photo)
    assert torch.equal(state.current.latent, after) and psnr(outcome.image, photo) == pytest.approx(fit_after)


def test_progress_frames_stream_on_through_the_tune(weights, photos):  # noqa: F811
    pti = tuned(weights)
    seen = []
    Editor(pti, refine_steps=W_STEPS).upload(DialogState(), photos[0],
                                             on_progress=lambda step, image: seen.append((step, image.clone())))
    assert [step for step, _ in seen] == [0, 10, 20, 30]  # two of the inversion, then two of the tune
    tune_frames = [image for step, image in seen if step >= W_STEPS]
    assert all(image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1 for image in tune_frames)
    assert not torch.equal(tune_frames[0], tune_frames[1])  # the weights moved between them


def test_two_photos_edited_in_turn_are_each_drawn_with_their_own_tune_and_new_faces_with_none(weights, photos):  # noqa: F811
    plain, pti = load(weights), tuned(weights)
    editor = Editor(pti, refine_steps=W_STEPS, max_steps=3)
    new_face = pti.sample(3)
    new_face_image = pti.generate(new_face)
    a, b = DialogState(), DialogState()
    editor.upload(a, photos[0])
    a_image = editor.image(a)
    editor.upload(b, photos[1])  # photo B's tune, after A's
    editor.edit(b, "smiling", change=1)
    assert torch.equal(editor.image(a), a_image)  # A unchanged, pixel for pixel
    assert not torch.equal(a_image, plain.generate(a.current.latent[:, :-1])[0])  # and drawn by A's tune
    assert set(pti.tuned) == {key_of(a.current.latent), key_of(b.current.latent)} and len(pti.tuned) == 2
    # a batch of both photos and a new face draws each row as alone
    batch = torch.cat([b.current.latent, new_face, a.current.latent])
    drawn = pti.generate(batch)
    assert torch.equal(drawn[0], editor.image(b)) and torch.equal(drawn[2], a_image)
    # new faces: the untuned generator, before and after any tune
    assert torch.equal(drawn[1:2], new_face_image) and torch.equal(pti.generate(pti.sample(3)), new_face_image)
    assert torch.equal(new_face_image, plain.generate(new_face[:, :-1])) and not key_row(new_face).any()


def test_a_walk_step_never_moves_the_key_and_an_edited_photo_keeps_its_tune_through_the_store(weights, photos):  # noqa: F811
    pti = tuned(weights)
    editor = Editor(pti, refine_steps=W_STEPS, max_steps=4)
    state = DialogState()
    editor.upload(state, photos[0])
    latent = state.current.latent
    for attribute in range(len(pti.attributes)):
        for direction in (1, -1):
            change = pti.step("field", attribute, latent, direction)
            assert change.shape == latent.shape and not key_row(change).any() and change[:, :-1].abs().sum() > 0
    assert torch.equal(pti.latent_distance(latent), load(weights).latent_distance(latent[:, :-1]))
    age = int(pti.predict(editor.image(state)[None]).degrees[0, pti.attributes.index("age")])
    result = edit(pti, FaceState(latent, None), "age", target=0 if age >= 3 else 5, max_steps=6)
    assert result.steps >= 1 and all(torch.equal(key_row(f.latent), key_row(latent)) for f in result.frames)
    moved = result.frames[-1]
    state.push(Entry(moved.latent.float().cpu(), moved.degrees, "age", state.current.face))
    restored = DialogState.from_json(state.to_json())  # as the SQLite store keeps it
    assert torch.equal(restored.current.latent, moved.latent)
    assert torch.equal(pti.generate(restored.current.latent)[0], moved.image)  # the same face, by the same tune


def test_a_dropped_tune_comes_back_from_photo_dir_the_same_or_the_photo_is_asked_for_again(weights, photos, tmp_path):  # noqa: F811
    saved = tuned(weights, photo_dir=tmp_path / "photos", pti_cache=1)
    editor = Editor(saved, refine_steps=W_STEPS, max_steps=2)
    a, b = DialogState(), DialogState()
    editor.upload(a, photos[0])
    a_image, (a_key,) = editor.image(a), list(saved.tuned)
    a_weights = saved.tuned[a_key]
    editor.upload(b, photos[1])
    assert list(saved.tuned) != [a_key]  # A's tune was dropped for B's
    assert torch.equal(editor.image(a), a_image)  # redone from the saved photo and pivot
    assert all(torch.equal(saved.tuned[a_key][name], tensor) for name, tensor in a_weights.items())
    assert len(list((tmp_path / "photos").glob("*.pt"))) == 2

    memory_only = tuned(weights, pti_cache=1)
    editor = Editor(memory_only, refine_steps=W_STEPS, max_steps=2)
    state = DialogState()
    editor.upload(state, photos[0])
    editor.upload(state, photos[1])
    before = (state.index, len(state.entries))
    with pytest.raises(EditError, match="upload the photo again"):
        editor.undo(state)  # back to photo A, whose tune is gone
    assert (state.index, len(state.entries)) == before
    with pytest.raises(BackendError, match="upload the photo again"):
        memory_only.generate(state.entries[0].latent)


def test_without_pivotal_tuning_latents_and_drawings_are_as_before(weights, photos):  # noqa: F811
    plain = load(weights)
    assert plain.pti_steps == 0  # off on a CPU unless asked for
    n = plain.generator.n_latent
    seen = []
    latent = plain.encode(photos[0][None], refine_steps=W_STEPS, on_progress=lambda step, image: seen.append(step))
    assert latent.shape == (1, n, STYLE) and plain.sample(3).shape == (1, n, STYLE)
    assert seen == [0, 10] and not plain.tuned
    # a backend with the option on still draws a plain W+ code with the untuned generator
    assert torch.equal(tuned(weights).generate(latent), plain.generate(latent))
    assert resolve_pti_steps(None, "cpu") == 0 and resolve_pti_steps(None, "cuda") == DEFAULT_PTI_STEPS
    with pytest.raises(ValueError, match="pti_steps.*-1"):
        resolve_pti_steps(-1, "cpu")
    with pytest.raises(ValueError, match=r"\(B, 8, 16\)"):
        plain.generate(torch.zeros(1, n + 2, STYLE))


def test_pti_steps_is_a_stylegan2_option_on_the_command_line_and_in_build_agent(capsys):
    from chatedit import cli
    from chatedit.agent import build_agent

    args = cli.build_parser().parse_args(["serve", "--backend", "stylegan2", "--pti-steps", "50"])
    assert cli._backend_options(args) == {"pti_steps": 50}
    args = cli.build_parser().parse_args(["bench", "edit", "--backend", "stylegan2", "--pti-steps", "0"])
    assert cli._backend_options(args) == {"pti_steps": 0}
    with pytest.raises(ValueError, match="--pti-steps: an option of --backend stylegan2, not of --backend builtin"):
        build_agent("builtin", pti_steps=10)
    assert cli.main(["bench", "edit", "--pti-steps", "5"]) == 1
    assert "--pti-steps: an option of --backend stylegan2" in capsys.readouterr().err


def test_bench_edit_with_pti_edits_the_sampled_faces_inverted_and_tuned(weights):  # noqa: F811
    from chatedit import bench_edit

    pti = tuned(weights)
    faces = bench_edit.inverted_faces(pti, 2, pti.eval_read, refine_steps=5)
    assert faces.codes.shape == (2, pti.generator.n_latent + 1, STYLE)
    assert {key_of(code[None]) for code in faces.codes} == set(pti.tuned) and len(pti.tuned) == 2
    assert faces.methods == ("field",) and pti.generate(faces.codes).shape == (2, 3, 32, 32)
