"""The diffusion backend on tiny random Stable Diffusion parts saved as a real pipeline folder.

Everything loads through the same path as ``--backend diffusion --model DIR`` with the hub off;
the weights are random, so these tests check the machinery (inversion kept per photo, concepts
and their directions, adapters, previews, refusals), not how good an edit looks.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from chatedit.agent import Agent, FrameEvent, Reply
from chatedit.editor import EditError, Editor
from chatedit.images import to_pil
from chatedit.rules_model import RulesChatModel
from chatedit.state import DialogState
from chatedit.tools.diffusion.backend import DiffusionBackend, photo_key
from chatedit.tools.diffusion.pipeline import PipelineLoadError, load_pipeline
from chatedit.tools.backend import BackendError

from diffusion_fixtures import build_lora, build_open_clip, build_pipeline

SIZE = 64
SMILING, EYEGLASSES = 3, 1  # attribute order of prompts/attributes.yaml


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusion")
    model = build_pipeline(root / "sd", resolution=SIZE)
    clip = build_open_clip(root / "clip")
    adapters = root / "adapters"
    adapters.mkdir()
    build_lora(model, adapters / "smiling.safetensors")
    return {"model": model, "clip": clip, "adapters": adapters, "root": root}


def _backend(parts, **options) -> DiffusionBackend:
    options = {"inversion_steps": 6, "preview_every": 2, "device": "cpu", **options}
    return DiffusionBackend.load(str(parts["model"]), clip=str(parts["clip"]), **options)


@pytest.fixture(scope="module")
def backend(parts):
    return _backend(parts)


def _photo(seed: int) -> torch.Tensor:
    """A (3, SIZE, SIZE) picture in [0, 1] with some structure (a face-like blob on a gradient)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    colour = torch.rand(3, 1, 1, generator=g)
    blob = (x**2 / 0.3 + y**2 / 0.5 < 1).float()
    image = 0.3 * (x + 1) / 2 + blob * colour + 0.05 * torch.rand(3, SIZE, SIZE, generator=g)
    return (image / image.max()).clamp(0, 1)


def _strengths(latent: torch.Tensor, **values: float) -> torch.Tensor:
    out = latent.clone()
    for name, value in values.items():
        out[0, {"smiling": SMILING, "eyeglasses": EYEGLASSES}[name]] = value
    return out


def test_a_pipeline_folder_loads_offline_and_a_photo_is_redrawn_from_its_own_inversion(backend):
    photo = _photo(0)
    latent = backend.encode(photo[None])
    assert latent.shape == (1, len(backend.attributes) + 2)
    assert torch.all(latent[0, :-2] == 0)
    key = photo_key((photo * 255).round().byte())
    assert key in backend.photos
    redrawn = backend.generate(latent)[0]
    assert redrawn.shape == (3, SIZE, SIZE)
    # LEDITS++ inversion is exact up to the VAE: no edit redraws the VAE's own reconstruction
    vae = backend.pipe.vae
    with torch.no_grad():
        x0 = vae.encode(photo[None] * 2 - 1).latent_dist.mode()
        through_vae = ((vae.decode(x0).sample + 1) / 2).clamp(0, 1)[0]
    assert float((redrawn - through_vae).abs().mean()) < 0.02


def test_two_concepts_one_reversed_edit_together_stream_previews_and_are_deterministic(backend):
    latent = backend.encode(_photo(1)[None])
    plain = backend.generate(latent)[0]
    previews: list[torch.Tensor] = []
    both = _strengths(latent, smiling=1.5, eyeglasses=-1.5)
    edited = backend.generate(both, on_preview=previews.append)[0]
    assert len(previews) >= 2 and all(p.shape == (3, SIZE, SIZE) for p in previews)
    assert float((edited - plain).abs().mean()) > 0.005  # the concepts changed the picture
    assert torch.allclose(backend.generate(both)[0], edited, atol=1e-5)  # same latent, same picture
    flipped = backend.generate(_strengths(latent, smiling=1.5, eyeglasses=1.5))[0]
    assert float((flipped - edited).abs().mean()) > 0.002  # the reversed concept is walked the other way


def test_sessions_sharing_the_pipeline_each_edit_their_own_photo(backend):
    first, second = backend.encode(_photo(2)[None]), backend.encode(_photo(3)[None])
    alone = backend.generate(_strengths(first, smiling=2.0))[0]
    # interleave: the pipeline last inverted the second photo, then edits it, then the first again
    other = backend.generate(_strengths(second, smiling=2.0))[0]
    again = backend.generate(_strengths(first, smiling=2.0))[0]
    assert torch.allclose(again, alone, atol=1e-5)
    assert float((other - alone).abs().mean()) > 0.01


def test_two_sessions_of_the_agent_interleave_uploads_and_edits(backend):
    agent = Agent(Editor(backend, max_steps=4), RulesChatModel())
    a, b = agent.open(image=_photo(4))[0].id, agent.open(image=_photo(5))[0].id
    for session in (a, b):
        events = list(agent.chat(session, "make the person smile a lot more"))
        assert isinstance(events[-1], Reply)
    for session, seed in ((a, 4), (b, 5)):
        state = agent.session(session).state
        key = int(state.current.latent[0, -2]) * 2**24 + int(state.current.latent[0, -1])
        assert key == photo_key((_photo(seed) * 255).round().byte())  # still this session's own photo
        assert {e.face for e in state.entries} == {0}


def _start(call, results: list) -> threading.Thread:
    """``call`` on a thread of its own; its result, or the error it raised, goes into ``results``."""
    def run():
        try:
            results.append(call())
        except Exception as error:
            results.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["upload", "from-disk"])
def test_two_sessions_asking_for_one_photo_at_once_invert_it_once(parts, tmp_path, monkeypatch, how):
    backend = _backend(parts, photo_dir=tmp_path / "photos")
    photo = _photo(20)
    if how == "upload":
        def ask():
            return backend.encode(photo[None])
    else:  # an edit of a photo whose inversion was dropped: both sessions need it redone from the saved photo
        latent = _strengths(backend.encode(photo[None]), smiling=1.0)
        backend.photos.clear(), backend.drawn.clear()

        def ask():
            return backend.generate(latent)
    real_invert, inversions = backend.pipe.invert, []
    inside, release = threading.Event(), threading.Event()

    def held_invert(**kwargs):  # the first inversion waits until the second session has asked too
        inversions.append(kwargs["image"].size)
        inside.set()
        assert release.wait(timeout=60)
        return real_invert(**kwargs)

    monkeypatch.setattr(backend.pipe, "invert", held_invert)
    results: list = []
    first = _start(ask, results)
    assert inside.wait(timeout=60)
    second = _start(ask, results)
    time.sleep(0.3)  # the second session now asks for the photo that the first is inverting
    release.set()
    first.join(timeout=120), second.join(timeout=120)
    assert len(results) == 2 and all(isinstance(r, torch.Tensor) for r in results), results
    assert torch.equal(results[0], results[1])
    assert len(inversions) == 1  # waited for, not redone


def test_two_sessions_editing_two_photos_at_once_through_a_one_photo_cache(parts, tmp_path):
    backend = _backend(parts, photo_dir=tmp_path / "photos", max_photos=1)  # each photo evicts the other
    latents = [backend.encode(_photo(seed)[None]) for seed in (21, 22)]
    edits = [[_strengths(latent, smiling=s) for s in (1.0, -1.0)] for latent in latents]
    alone = [[backend.generate(edit)[0] for edit in session] for session in edits]
    backend.photos.clear(), backend.drawn.clear()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often: cache reads and writes interleave
    results: list = []
    try:
        threads = [_start(lambda s=session: (s, [backend.generate(e)[0] for e in edits[s]]), results)
                   for session in (0, 1)]
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert len(results) == 2 and all(isinstance(r, tuple) for r in results), results  # no KeyError, no hang
    for session, drawn in results:
        assert all(torch.allclose(d, e, atol=1e-5) for d, e in zip(drawn, alone[session]))
    assert len(backend.photos) == 1 and not backend.inverting


def test_the_editor_walks_strength_and_streams_previews_between_frames(backend):
    from chatedit import faces

    editor = Editor(backend, max_steps=4)
    agent = Agent(editor, RulesChatModel())
    session = agent.open(image=_photo(6))[0].id
    events = list(agent.chat(session, "make the person smile more"))
    previews = [e for e in events if isinstance(e, FrameEvent) and e.preview]
    steps = [e for e in events if isinstance(e, FrameEvent) and not e.preview]
    assert steps and previews  # frames of the walk, and images of each pass forming in between
    state = agent.session(session).state
    moved = state.current.latent[0, :-2]
    if len(state.entries) > 1:  # a random reader may not read any change; when it does, only smiles moved
        assert moved[SMILING] > 0 and torch.count_nonzero(moved) == 1
        # dlib's embedding is the identity model when the faces extra is there: then the page has a number
        assert (agent.editor.identity_similarity(state) is None) == (not faces.available())


def test_a_lora_slider_edits_its_attribute_and_weight_zero_is_the_photo(parts):
    backend = _backend(parts, adapters=parts["adapters"])
    assert backend.adapters == {"smiling": 1.0}
    latent = backend.encode(_photo(7)[None])
    plain = backend.generate(latent)[0]
    smiled = backend.generate(_strengths(latent, smiling=1.0))[0]
    assert float((smiled - plain).abs().mean()) > 0.002
    # the adapter replaces the concept for smiles; weight 0 again gives back the unedited photo
    assert torch.allclose(backend.generate(_strengths(latent, smiling=0.0))[0], plain, atol=1e-5)


def test_the_clip_reader_reads_six_degrees_of_every_attribute(backend):
    reading = backend.predict(torch.stack([_photo(8), _photo(9)]))
    assert reading.probs.shape == (2, len(backend.attributes), 6)
    assert torch.allclose(reading.probs.sum(-1), torch.ones(2, len(backend.attributes)))
    assert torch.equal(backend.predict(_photo(8)[None]).degrees[0], reading.degrees[0])


def test_new_faces_are_drawn_by_the_checkpoint_and_repeat_for_a_seed(backend):
    one, same, other = backend.sample(5), backend.sample(5), backend.sample(6)
    assert torch.equal(one, same) and not torch.equal(one, other)
    assert backend.generate(one).shape == (1, 3, SIZE, SIZE)


def test_a_new_face_after_edits_is_drawn_as_before_with_the_unets_own_attention(parts):
    # LEDITS++ installs its own attention processors (plain attention that records maps into the
    # pipeline's store) and leaves them on the UNet the text-to-image pipeline shares
    fresh = _backend(parts)
    own = {name: type(p) for name, p in fresh.pipe.unet.attn_processors.items()}
    before = fresh.generate(fresh.sample(7))[0]
    latent = fresh.encode(_photo(4)[None])
    fresh.generate(_strengths(latent, smiling=1.5, eyeglasses=-1.0))
    assert {name: type(p) for name, p in fresh.pipe.unet.attn_processors.items()} == own
    recorded = fresh.pipe.attention_store.step_store
    maps = sum(len(v) for v in recorded.values())
    after = fresh.generate(fresh.sample(7))[0]
    assert torch.equal(after, before)  # the same new face for the same seed
    assert sum(len(v) for v in fresh.pipe.attention_store.step_store.values()) == maps  # nothing recorded


def test_photos_come_back_from_disk_and_otherwise_are_asked_for_again(parts, tmp_path):
    saved = _backend(parts, photo_dir=tmp_path / "photos")
    latent = saved.encode(_photo(10)[None])
    before = saved.generate(_strengths(latent, smiling=1.0))[0]
    saved.photos.clear(), saved.drawn.clear()  # as after a restart
    assert torch.allclose(saved.generate(_strengths(latent, smiling=1.0))[0], before, atol=1e-5)

    memory_only = _backend(parts)
    editor = Editor(memory_only, max_steps=2)
    state = DialogState()
    editor.upload(state, _photo(11))
    editor.upload(state, _photo(12))
    memory_only.photos.clear(), memory_only.drawn.clear()
    before = (state.index, len(state.entries))
    with pytest.raises(EditError, match="upload it again"):
        editor.undo(state)
    assert (state.index, len(state.entries)) == before


def test_clear_errors_for_models_that_cannot_load(tmp_path):
    with pytest.raises(PipelineLoadError, match="not in the local Hugging Face cache"):
        load_pipeline("nobody-here/no-such-model", device="cpu")
    (tmp_path / "unet").mkdir()
    with pytest.raises(PipelineLoadError, match="not a diffusers pipeline folder"):
        load_pipeline(str(tmp_path), device="cpu")


def test_a_huge_photo_is_refused_at_intake(backend):
    with pytest.raises(ValueError, match="megapixels"):
        backend.intake(Image.new("RGB", (8000, 6000)))


def test_out_of_gpu_memory_retries_smaller_then_says_so_and_changes_nothing(parts, monkeypatch):
    backend = _backend(parts)
    real_invert, sizes = backend.pipe.invert, []

    def once_out_of_memory(image, **kwargs):
        sizes.append(image.size[0])
        if len(sizes) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_invert(image=image, **kwargs)

    monkeypatch.setattr(backend.pipe, "invert", once_out_of_memory)
    latent = backend.encode(_photo(13)[None])
    assert sizes == [SIZE, SIZE // 2]
    assert backend.generate(latent).shape == (1, 3, SIZE, SIZE)  # shown at full size all the same

    def always_out_of_memory(image, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(backend.pipe, "invert", always_out_of_memory)
    editor = Editor(backend)
    state = DialogState()
    with pytest.raises(EditError, match="ran out of memory"):
        editor.upload(state, _photo(14))
    assert not state.has_face
    with pytest.raises(BackendError):
        backend.encode(_photo(14)[None])


def test_photo_keys_survive_the_float_latent_exactly():
    for photo in (torch.zeros(3, 4, 4, dtype=torch.uint8), torch.full((3, 4, 4), 255, dtype=torch.uint8)):
        key = photo_key(photo)
        latent = DiffusionBackend._latent(key, torch.zeros(5))
        assert DiffusionBackend._split(latent[0])[0] == key
    assert np.isfinite(latent.numpy()).all()


def test_a_photo_comes_in_aligned_at_the_pipelines_resolution_and_a_faceless_one_is_refused(backend):
    from chatedit.tools.align import NoFaceFound
    from chatedit.tools.builtin.data import render_set

    render = Image.fromarray(render_set(10, 1, seed=5).images[1].permute(1, 2, 0).numpy()).resize((384, 384))
    canvas = Image.new("RGB", (600, 600), (128, 128, 128))
    canvas.paste(render, (150, 100))
    face = backend.intake(canvas)
    assert face.shape == (3, SIZE, SIZE) and 0 <= float(face.min()) and float(face.max()) <= 1
    with pytest.raises(NoFaceFound):
        backend.intake(Image.new("RGB", (300, 300), (90, 90, 90)))


# --------------------------------------------------------------------------- a real installation (issue #31, item 6)


def test_an_upload_is_inverted_once_and_its_unedited_face_costs_no_pass(parts, monkeypatch):
    backend = _backend(parts)
    pipeline = type(backend.pipe)
    runs = {"invert": 0, "pass": 0}
    real_invert, real_call = pipeline.invert, pipeline.__call__

    def invert(self, *args, **kwargs):
        runs["invert"] += 1
        return real_invert(self, *args, **kwargs)

    def denoise(self, *args, **kwargs):
        runs["pass"] += 1
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(pipeline, "invert", invert)
    monkeypatch.setattr(pipeline, "__call__", denoise)
    state = DialogState()
    Editor(backend, min_fit_psnr=0.0).upload(state, _photo(20))  # the random VAE redraws poorly: no fit check
    assert runs == {"invert": 1, "pass": 0}  # the unedited face is the VAE's reconstruction, from the inversion
    backend.generate(_strengths(state.current.latent, smiling=1.0))
    assert runs == {"invert": 1, "pass": 1}  # an edit is one pass


def _from_command_line(parts, *flags: str) -> DiffusionBackend:
    """The backend as ``chatedit serve --backend diffusion FLAGS`` makes it: the registry's flags, parsed."""
    from chatedit.tools import registry

    parser = argparse.ArgumentParser()
    registry.add_arguments(parser)
    args = parser.parse_args(["--model", str(parts["model"]), "--clip", str(parts["clip"]), *flags])
    return registry.load("diffusion", **registry.given_options(args, ("diffusion",)))


def test_steps_and_device_reach_the_backend_from_the_command_line(parts):
    backend = _from_command_line(parts, "--steps", "3", "--new-face-steps", "2", "--device", "cpu")
    assert backend.device.type == "cpu" and backend.reader.device.type == "cpu"
    latent = backend.encode(_photo(21)[None])
    key = DiffusionBackend._split(latent[0])[0]
    assert len(backend.photos[key].timesteps) == 3  # the inversion, and so every edit pass, runs 3 steps
    unet_calls = []
    hook = backend.pipe.unet.register_forward_hook(lambda *_: unet_calls.append(1))
    try:
        backend.generate(_strengths(latent, eyeglasses=1.0))
        edit_calls = len(unet_calls)
        backend.sample(3)
    finally:
        hook.remove()
    assert edit_calls == 3 and len(unet_calls) - edit_calls == 2 + 3  # 2 text-to-image steps, then its inversion


def test_step_counts_and_devices_that_cannot_be_are_refused_by_name(parts):
    with pytest.raises(ValueError, match="--steps must be at least 1, got 0"):
        _from_command_line(parts, "--steps", "0")
    with pytest.raises(PipelineLoadError, match="--device tpu9"):
        _from_command_line(parts, "--device", "tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(PipelineLoadError, match="--device cuda asks for a CUDA GPU"):
            _from_command_line(parts, "--device", "cuda")


def test_loading_passes_no_deprecated_torch_dtype(parts, recwarn):
    import warnings

    warnings.simplefilter("always")
    _backend(parts)
    assert not [w for w in recwarn if "torch_dtype" in str(w.message)]


def test_the_new_face_pipeline_keeps_the_shared_components_dtype(parts):
    backend = _backend(parts)
    backend.pipe.to(dtype=torch.bfloat16)  # as float16 on a GPU
    backend._text2image()
    assert backend.pipe.unet.dtype == backend.pipe.vae.dtype == torch.bfloat16


def test_an_opencv_without_cascades_refuses_an_upload_in_a_sentence(backend, monkeypatch):
    import cv2

    import chatedit
    from chatedit.feedback import load_feedback
    from chatedit.intake import read_photo

    monkeypatch.setitem(sys.modules, "chatedit.faces", None)  # no dlib either
    monkeypatch.delattr(chatedit, "faces", raising=False)
    monkeypatch.delattr(cv2, "CascadeClassifier")  # as opencv-python 5, which insightface pulls in
    with pytest.raises(EditError) as refused:
        read_photo(backend, Image.fromarray((_photo(22) * 255).byte().permute(1, 2, 0).numpy()).resize((300, 300)))
    assert str(refused.value) == load_feedback().say("upload.no_detector")


# --------------------------------------------------------------------------- the real-photo readers and identity


def _real_photo(name: str, size: int = 256) -> torch.Tensor:
    """A (3, size, size) aligned face in [0, 1] from a real photograph (astronaut or grace_hopper)."""
    from chatedit import faces
    from chatedit.bench_photos import default_photos

    picture = Image.open(next(p for p in default_photos() if p.stem == name)).convert("RGB")
    crop = faces.align(picture, faces.detect(picture)[0], size)
    return torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).float() / 255


def test_reader_real_reads_age_and_smiling_with_the_real_readers_and_the_rest_with_clip(parts):
    from chatedit import faces, readers
    from chatedit.tools.diffusion.real import RealDegreeReader, find_face

    if not (readers.age_available() and readers.smile_available()):
        pytest.skip('needs the faces extra: pip install -e ".[faces]"')
    backend = _from_command_line(parts, "--reader", "real", "--device", "cpu")
    assert isinstance(backend.reader, RealDegreeReader) and backend.degree_reader == "real"
    # a real photograph: dlib finds the face, and the degrees are what the real readers say of it
    noise = torch.nn.functional.interpolate(_photo(30)[None], size=256, mode="bilinear")[0]
    image = torch.stack([_real_photo("astronaut"), noise])  # and no face: read where alignment would put one
    reading = backend.predict(image)
    clip = backend.clip_reader.read(image)
    age, smiling = backend.attributes.index("age"), backend.attributes.index("smiling")
    for b, one in enumerate(image):
        picture = Image.fromarray((one * 255).round().byte().permute(1, 2, 0).numpy())
        face = find_face(picture)
        assert int(reading.degrees[b, age]) == readers.AgeReader().read(picture, face).degree
        assert int(reading.degrees[b, smiling]) == readers.SmileReader().read(picture, face).degree
        assert int(reading.expected[b, age]) == int(reading.degrees[b, age])  # its floor is the degree read
    assert faces.detect(Image.fromarray((image[0] * 255).round().byte().permute(1, 2, 0).numpy()))
    others = [a for a in range(len(backend.attributes)) if a not in (age, smiling)]
    assert torch.equal(reading.degrees[:, others], clip.degrees[:, others])  # glasses, beard, bangs: CLIP's
    assert torch.allclose(reading.probs.sum(-1), torch.ones(2, len(backend.attributes)), atol=1e-4)
    # the walk steers by it: an edit of a photo runs through the real readers
    latent = backend.encode(_photo(31)[None])
    assert backend.predict(backend.generate(latent)).degrees.shape == (1, len(backend.attributes))


def test_reader_real_without_the_faces_extra_is_refused_by_name_with_the_install_sentence(parts, monkeypatch):
    from chatedit import readers
    from chatedit.tools.diffusion.plugin import DiffusionOptions, check

    monkeypatch.setattr(readers, "age_available", lambda: False)
    refusal = r'--reader real needs .* pip install -e "\.\[faces\]"'
    with pytest.raises(FileNotFoundError, match=refusal):  # the registry's check, before anything loads
        _from_command_line(parts, "--reader", "real")
    with pytest.raises(ValueError, match=refusal):  # and the backend itself, however it is made
        _backend(parts, degree_reader="real")
    why = check(DiffusionOptions(model=str(parts["model"]), clip=str(parts["clip"]), reader="real"))
    assert why.startswith("--reader real needs") and 'pip install -e ".[faces]"' in why
    with pytest.raises(SystemExit):  # a reader that does not exist is refused by argparse, by name
        _from_command_line(parts, "--reader", "llava")


def test_identity_is_dlibs_embedding_so_every_real_photo_edit_has_a_similarity(backend):
    from chatedit import faces
    from chatedit.editor import Editor

    if not faces.available():
        pytest.skip('needs the faces extra: pip install -e ".[faces]"')
    astronaut, hopper = _real_photo("astronaut"), _real_photo("grace_hopper")
    embeddings = backend.identity(torch.stack([astronaut, astronaut, hopper]))
    assert embeddings.shape == (3, 128)
    same, other = (float(s) for s in backend.similarity(embeddings[:2], embeddings[[1, 2]]))
    assert same > 0.99 and other < 0.5  # one person alike; two people apart, by dlib's own threshold
    pictures = [to_pil(p) for p in (astronaut, hopper)]
    dlib_reading = faces.similarity(*(faces.identity(p, faces.detect(p)[0]) for p in pictures))
    assert abs(other - dlib_reading) < 0.02  # the page's number is chatedit faces' number
    # the status line's number: the editor's similarity of an edited photo to its original is there
    editor, state = Editor(backend), DialogState()
    editor.upload(state, _photo(32))
    edited = backend.generate(_strengths(state.current.latent, eyeglasses=1.0))[0]
    similarity = editor.identity_similarity(state, image=edited)
    assert similarity is not None and 0.0 <= similarity <= 1.0
