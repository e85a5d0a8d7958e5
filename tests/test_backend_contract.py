"""The contract every registered backend keeps (in the spirit of diffusers' ``PipelineTesterMixin``).

The same checks run on the built-in backend (its shipped weights), on the StyleGAN2 backend
(random weights in Talk-to-Edit's published layout), on the diffusion backend (a tiny random
Stable Diffusion pipeline folder) and on the W+ adapter backend (random files in the W+ adapter's,
e4e's and Talk-to-Edit's layouts over that pipeline): the declared interface and capabilities, determinism for a
seed, streaming, and the failure behaviour a person sees (a clear sentence, nothing changed).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from chatedit.attributes import MAX_DEGREE, attribute_names
from chatedit.editor import EditError, Editor
from chatedit.state import DialogState
from chatedit.tools import registry
from chatedit.tools.backend import Backend, BackendError, Capabilities

from test_diffusion_backend import _backend as diffusion_backend
from test_diffusion_backend import parts  # noqa: F401  (a fixture)
from test_stylegan2_backend import load as stylegan2_backend
from test_stylegan2_backend import weights  # noqa: F401  (a fixture)
from test_wplus_backend import wplus_backend
from test_wplus_backend import wplus_parts  # noqa: F401  (a fixture)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: on a machine shared with other jobs two threads fight over two cores, and the tiny
    Stable Diffusion passes take seconds instead of milliseconds (the sums are the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=registry.names())
def backend(request):
    if request.param == "builtin":
        return registry.load("builtin")
    if request.param == "stylegan2":
        return stylegan2_backend(request.getfixturevalue("weights"))
    if request.param == "wplus":
        return wplus_backend(request.getfixturevalue("wplus_parts"))
    return diffusion_backend(request.getfixturevalue("parts"))


@pytest.fixture
def editor(backend):
    return Editor(backend, max_steps=4, refine_steps=min(backend.capabilities.refine_steps, 5))


def _face(backend, seed: int = 3) -> torch.Tensor:
    return backend.sample(seed)


# --------------------------------------------------------------------------- what it declares


def test_it_is_registered_and_declares_its_whole_contract(backend):
    spec = registry.get(backend.name)
    assert isinstance(backend, Backend) and type(backend) is spec.backend_class()
    assert isinstance(backend.capabilities, Capabilities) and backend.capabilities is spec.capabilities()
    assert backend.attributes == attribute_names()
    assert isinstance(backend.resolution, int) and isinstance(backend.device, torch.device)
    assert "field" in backend.capabilities.methods
    described = registry.describe(backend.name)
    assert described["capabilities"] == dataclasses.asdict(backend.capabilities)
    assert {"weights", "gpu", "extras", "packages"} <= set(described["needs"])


def test_an_optional_member_works_exactly_when_it_is_declared(backend):
    w = _face(backend)
    calls = {
        "degree_offsets": lambda: backend.degree_offset(0, w, 0, 2),
        "polish": lambda: backend.polish(w, 0, 2, backend.predict(backend.generate(w)).probs[0]),
        "scenes": lambda: backend.with_scene(w, "on a beach"),
    }
    for capability, call in calls.items():
        if getattr(backend.capabilities, capability):
            assert call().shape == w.shape
        else:
            with pytest.raises(NotImplementedError, match=backend.name):
                call()


# --------------------------------------------------------------------------- faces in and out


def test_the_same_seed_gives_the_same_face_and_reading(backend):
    w = _face(backend)
    assert torch.equal(w, _face(backend)) and not torch.equal(w, _face(backend, seed=4))
    image = backend.generate(w)
    assert image.shape == (1, 3, backend.resolution, backend.resolution)
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert torch.allclose(image, backend.generate(w), atol=1e-5)
    reading = backend.predict(image)
    assert reading.degrees.shape == (1, len(backend.attributes))
    assert int(reading.degrees.min()) >= 0 and int(reading.degrees.max()) <= MAX_DEGREE
    assert reading.probs is None or reading.probs.shape == (1, len(backend.attributes), MAX_DEGREE + 1)
    embedding = backend.identity(image)
    if embedding is not None:  # a face is itself, by the backend's own reading of its embeddings
        assert embedding.shape[0] == 1 and float(backend.similarity(embedding, embedding)[0]) > 0.99


def test_steps_have_the_latents_shape_and_a_method_it_lacks_is_refused(backend):
    w = _face(backend)
    for method in backend.capabilities.methods:
        for direction in (1, -1):
            assert backend.step(method, 3, w, direction).shape == w.shape
    if "linear" not in backend.capabilities.methods:
        with pytest.raises(ValueError, match="linear"):
            backend.step("linear", 3, w)
    assert torch.isfinite(backend.latent_distance(w)).all()


def test_an_upload_streams_its_reconstruction_when_declared(backend, editor):
    photo = backend.generate(_face(backend, seed=11))[0]
    seen = []
    state = DialogState()
    outcome = editor.upload(state, photo, on_progress=lambda step, image: seen.append(image.shape))
    assert outcome.changed and len(state.entries) == 1
    assert state.current.latent.shape == _face(backend).shape
    if backend.capabilities.streams_inversion:
        assert seen and all(shape == (3, backend.resolution, backend.resolution) for shape in seen)


def test_previews_stream_exactly_when_declared(backend):
    w = _face(backend, seed=5)
    moved = w + backend.step("field", 3, w, 1)  # a latent not drawn yet (photo backends cache pictures)
    previews = []
    backend.generate(moved, on_preview=previews.append)
    assert bool(previews) == backend.capabilities.previews


# --------------------------------------------------------------------------- failures a person sees


def test_bad_requests_are_refused_in_a_sentence_and_change_nothing(backend, editor):
    state = DialogState()
    editor.new_face(state, seed=7)
    before = (len(state.entries), state.index, state.current.latent.clone())
    for request in (dict(attribute="hair_colour", target=2), dict(attribute="smiling", target=MAX_DEGREE + 3),
                    dict(attribute="smiling", change=0), dict(attribute="smiling", target=1, change=1)):
        with pytest.raises(EditError):
            editor.edit(state, **request)
    with pytest.raises(EditError, match="blank|plain|single"):
        editor.upload(state, torch.full((3, backend.resolution, backend.resolution), 0.5))
    assert (len(state.entries), state.index) == before[:2] and torch.equal(state.current.latent, before[2])


def test_a_backend_failure_mid_edit_leaves_the_face_as_it_was(backend, editor, monkeypatch):
    state = DialogState()
    editor.new_face(state, seed=8)
    before = (len(state.entries), state.current.latent.clone())
    drawn = []
    real = backend.generate

    def failing(w, on_preview=None):
        drawn.append(1)
        if len(drawn) > 3:  # the start frame and a couple of steps draw, then the backend fails
            raise BackendError("the GPU ran out of memory")
        return real(w, on_preview=on_preview)

    monkeypatch.setattr(backend, "generate", failing)
    frames = []
    with pytest.raises(EditError, match="out of memory"):
        editor.edit(state, "smiling", change=-1 if state.current.degrees["smiling"] else 1, on_frame=frames.append)
    assert len(drawn) > 3  # it failed during the walk, not before it
    assert len(state.entries) == before[0] and torch.equal(state.current.latent, before[1])


def test_an_edit_streams_its_frames_and_repeats_for_the_same_face(backend, editor):
    results = []
    for _ in range(2):
        state = DialogState()
        editor.new_face(state, seed=9)
        frames = []
        editor.edit(state, "age", change=-1 if state.current.degrees["age"] >= 3 else 1, on_frame=frames.append)
        assert frames and all(f.image.shape == (3, backend.resolution, backend.resolution) for f in frames)
        results.append((state.current.latent.clone(), [f.degrees for f in frames]))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5) and results[0][1] == results[1][1]
