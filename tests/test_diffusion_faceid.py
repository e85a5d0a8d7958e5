"""Identity preservation in the diffusion backend: an IP-Adapter FaceID checkpoint fed by insightface.

The checkpoint is built here, random and tiny, in the published ``ip-adapter-faceid_sd15.bin`` layout
(and as ``.safetensors``) for the tiny UNet of ``diffusion_fixtures``, and loaded through the real
``--ip-adapter`` path; insightface is a stand-in whose ArcFace is a fixed random projection of the
picture's mean colour, so no ONNX file is needed. These tests check the machinery (what reaches the
UNet, per photo, and that nothing stays behind), not whether identity holds on real weights.
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

from chatedit import cli
from chatedit.agent import build_agent
from chatedit.tools.diffusion.backend import DiffusionBackend
from chatedit.tools.diffusion.faceid import load_faceid
from chatedit.tools.diffusion.pipeline import load_pipeline

from diffusion_fixtures import build_faceid, build_lora, build_open_clip, build_pipeline, faceid_state_dict
from test_align import face, install_fake_insightface
from test_diffusion_backend import SIZE, _photo, _strengths

SCALE = 0.6


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("faceid")
    model = build_pipeline(root / "sd", resolution=SIZE)
    adapters = root / "adapters"
    adapters.mkdir()
    build_lora(model, adapters / "smiling.safetensors")
    return {"model": model, "clip": build_open_clip(root / "clip"), "root": root, "adapters": adapters,
            "bin": build_faceid(model, root / "ip-adapter-faceid_sd15.bin"),
            "safetensors": build_faceid(model, root / "ip-adapter-faceid_sd15.safetensors")}


@pytest.fixture(scope="module")
def arcface(tmp_path_factory):
    """insightface stood in for (for this module), its detector and ArcFace files in a folder; returns the
    folder and the pictures it was shown."""
    folder = tmp_path_factory.mktemp("buffalo_l")
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        (folder / name).write_bytes(b"")
    projection = np.random.default_rng(0).normal(size=(512, 3))
    shown: list[np.ndarray] = []

    def get(self, img):  # one face: its embedding follows the picture's colour (BGR), so photos differ
        shown.append(img)
        colour = img.reshape(-1, 3).mean(0) / 255
        return [face((0, 0, img.shape[1], img.shape[0]), [[20, 25], [44, 25], [32, 35], [24, 45], [40, 45]],
                     embedding=projection @ colour + 0.1)]

    with pytest.MonkeyPatch.context() as patch:
        install_fake_insightface(patch, [], recognition=object())
        patch.setattr(sys.modules["insightface.app"].FaceAnalysis, "get", get)
        yield folder, shown


def _backend(parts, **options) -> DiffusionBackend:
    options = {"inversion_steps": 6, "preview_every": 2, "device": "cpu", **options}
    return DiffusionBackend.load(str(parts["model"]), clip=str(parts["clip"]), **options)


def _faceid(parts, arcface, file="bin", **options) -> DiffusionBackend:
    return _backend(parts, face_models=arcface[0], ip_adapter=parts[file], **options)


@pytest.fixture(scope="module")
def plain(parts):
    return _backend(parts)


@pytest.fixture(scope="module")
def faceid(parts, arcface):
    return _faceid(parts, arcface)


def _embedding_of(photo: torch.Tensor) -> torch.Tensor:
    """What the stand-in ArcFace says for a (3, R, R) picture in [0, 1], as the backend computes it."""
    rgb = (photo * 255).round().byte().float().reshape(3, -1).mean(1) / 255
    vector = np.random.default_rng(0).normal(size=(512, 3)) @ rgb.flip(0).numpy() + 0.1
    return torch.from_numpy(vector / np.linalg.norm(vector)).float()


def _hooks(unet) -> int:
    """Forward hooks on the UNet and everything in it."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in unet.modules())


def test_scale_zero_is_the_edit_without_the_adapter_and_a_nonzero_scale_changes_the_edit(parts, arcface, plain,
                                                                                        faceid):
    assert faceid.faceid.scale == pytest.approx(SCALE) and faceid.faceid.lora is not None  # the default; the file's LoRA
    off = _faceid(parts, arcface, ip_adapter_scale=0.0)
    hooks = _hooks(faceid.pipe.unet)
    photo = _photo(20)
    edits = [b.generate(_strengths(b.encode(photo[None]), smiling=1.5))[0] for b in (plain, off, faceid)]
    assert torch.allclose(edits[1], edits[0], atol=1e-5)
    assert float((edits[2] - edits[0]).abs().mean()) > 0.005
    # every row sees the photo's identity, the inversion included: no edit still redraws the photo
    latent = faceid.encode(photo[None])
    assert float((faceid.generate(latent)[0] - plain.generate(latent)[0]).abs().mean()) < 0.02
    assert _hooks(faceid.pipe.unet) == hooks


def test_the_safetensors_layout_loads_as_the_same_adapter(parts, arcface, faceid):
    from_safetensors = _faceid(parts, arcface, file="safetensors")
    photo = _photo(21)
    edits = [b.generate(_strengths(b.encode(photo[None]), smiling=1.5, eyeglasses=-1.0))[0]
             for b in (faceid, from_safetensors)]
    assert torch.allclose(edits[0], edits[1], atol=1e-5)


def test_a_lora_slider_edits_beside_faceids_own_lora(parts, arcface, faceid):
    both = _faceid(parts, arcface, adapters=parts["adapters"])
    sliders_only = _backend(parts, adapters=parts["adapters"])
    photo = _photo(26)
    latent = both.encode(photo[None])
    plain_photo = both.generate(latent)[0]
    assert torch.allclose(plain_photo, faceid.generate(faceid.encode(photo[None]))[0], atol=1e-5)  # slider at 0: off
    smiled = both.generate(_strengths(latent, smiling=1.0))[0]
    assert float((smiled - plain_photo).abs().mean()) > 0.002  # the slider still edits
    slider_alone = sliders_only.generate(_strengths(sliders_only.encode(photo[None]), smiling=1.0))[0]
    assert float((smiled - slider_alone).abs().mean()) > 0.002  # and the identity still steers the pass


def test_interleaved_sessions_each_edit_with_their_own_photos_identity(arcface, faceid):
    received: list[torch.Tensor] = []  # the embeddings each UNet call projected, one per row
    hook = faceid.faceid.projection.register_forward_pre_hook(lambda m, args: received.append(args[0][0][:, 0]))
    photos = {"a": _photo(22), "b": _photo(23)}
    _, shown = arcface
    seen = len(shown)
    try:
        latents = {k: faceid.encode(p[None]) for k, p in photos.items()}
        assert len(shown) == seen + 2  # each photo's identity computed once, at intake
        results = {}
        for session in ("a", "b", "a"):  # the pipeline last inverted b, then edits a, b, a again
            received.clear()
            faceid.drawn.clear()  # draw again, not from the picture cache
            results.setdefault(session, []).append(faceid.generate(_strengths(latents[session], smiling=2.0))[0])
            rows = torch.cat(received)  # (steps × rows, D): the unconditional row and the concept's, every step
            assert len(received) == 6 and rows.shape == (12, 512)
            assert torch.allclose(rows, _embedding_of(photos[session]).expand_as(rows), atol=1e-6)
    finally:
        hook.remove()
    assert len(shown) == seen + 2  # and never again per pass
    assert torch.allclose(results["a"][0], results["a"][1], atol=1e-5)
    assert float((results["a"][0] - results["b"][0]).abs().mean()) > 0.01


def test_the_unet_is_plain_after_a_pass_and_after_an_error(plain, faceid):
    hooks = _hooks(faceid.pipe.unet)
    latent = _strengths(faceid.encode(_photo(24)[None]), smiling=1.5)
    faceid.drawn.clear()
    before = faceid.generate(latent)[0]
    assert _hooks(faceid.pipe.unet) == hooks

    def boom(image):
        raise RuntimeError("the page went away")

    faceid.drawn.clear()
    with pytest.raises(RuntimeError, match="went away"):
        faceid.generate(latent, on_preview=boom)
    assert _hooks(faceid.pipe.unet) == hooks
    faceid.drawn.clear()
    assert torch.allclose(faceid.generate(latent)[0], before, atol=1e-5)
    # a face drawn from text has no photo: it is drawn without the adapter, so it is the face drawn without one
    drawn = [b.photos[b._split(b.sample(5)[0])[0]].photo.int() for b in (faceid, plain)]  # (3, R, R) uint8
    assert int((drawn[0] - drawn[1]).abs().max()) <= 1


def test_our_image_attention_is_what_diffusers_ip_adapter_processors_add(parts):
    reference = load_pipeline(str(parts["model"]), device="cpu")
    reference.image_encoder = None  # as load_faceid does: LEDITS++ has no image encoder component
    reference.load_ip_adapter(str(parts["root"]), subfolder="", weight_name=parts["bin"].name,
                              image_encoder_folder=None)
    reference.set_ip_adapter_scale(SCALE)  # diffusers' processors stay installed; its FaceID LoRA at 1
    ours = load_pipeline(str(parts["model"]), device="cpu")
    faceid = load_faceid(ours, parts["bin"], SCALE)
    ours.set_adapters([faceid.lora], adapter_weights=[1.0])
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(3, 4, SIZE // 2, SIZE // 2, generator=g), torch.randn(3, 77, 32, generator=g)
    embedding = torch.nn.functional.normalize(torch.randn(512, generator=g), dim=0)
    with torch.no_grad():
        expected = reference.unet(latents, 500, encoder_hidden_states=text,
                                  added_cond_kwargs={"image_embeds": [embedding.expand(3, 1, 512)]}).sample
        with faceid.applied(ours.unet, embedding):
            got = ours.unet(latents, 500, encoder_hidden_states=text).sample
        without = ours.unet(latents, 500, encoder_hidden_states=text).sample
    assert torch.allclose(got, expected, atol=1e-5)
    assert float((without - expected).abs().mean()) > 0.01  # and the face made a difference


def test_without_insightfaces_recognition_model_the_adapter_is_refused(parts, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="--face-models DIR"):
        _backend(parts, ip_adapter=parts["bin"])
    install_fake_insightface(monkeypatch, [])  # a detector only: no recognition model
    (tmp_path / "det_10g.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match=f"recognition model.*in --face-models {re.escape(str(tmp_path))}"):
        _backend(parts, face_models=tmp_path, ip_adapter=parts["bin"])
    with pytest.raises(ValueError, match="--ip-adapter-scale 0.8 needs --ip-adapter FILE"):
        _backend(parts, ip_adapter_scale=0.8)


def test_wrong_files_are_refused_by_name_and_leave_the_unet_as_it_was(parts, arcface, plain, tmp_path):
    backend = _backend(parts, face_models=arcface[0])
    state = faceid_state_dict(parts["model"])
    torch.save({"ip_adapter": state["ip_adapter"]}, tmp_path / "no_projection.bin")
    with pytest.raises(ValueError, match="no_projection.bin is not an IP-Adapter FaceID checkpoint: 'image_proj'"):
        backend.load_ip_adapter(tmp_path / "no_projection.bin")
    clip_images = {"proj.weight": torch.zeros(4 * 32, 64), "proj.bias": torch.zeros(4 * 32),
                   "norm.weight": torch.ones(32), "norm.bias": torch.zeros(32)}  # a plain IP-Adapter's projection
    torch.save({"image_proj": clip_images, "ip_adapter": state["ip_adapter"]}, tmp_path / "clip_images.bin")
    with pytest.raises(ValueError, match="clip_images.bin is an IP-Adapter, but not a FaceID one"):
        backend.load_ip_adapter(tmp_path / "clip_images.bin")
    torch.save({"image_proj": state["image_proj"], "ip_adapter": {}}, tmp_path / "no_layers.bin")
    with pytest.raises(ValueError, match="no_layers.bin is not an IP-Adapter FaceID checkpoint: '1.to_k_ip.weight'"):
        backend.load_ip_adapter(tmp_path / "no_layers.bin")
    with pytest.raises(FileNotFoundError, match="missing.bin does not exist"):
        backend.load_ip_adapter(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="0 or more but is -0.5"):
        backend.load_ip_adapter(parts["bin"], scale=-0.5)
    # after the refusals the UNet is as it was: no FaceID, no LoRA of its own, and the edit is the plain one
    assert backend.faceid is None and backend.pipe.unet.encoder_hid_proj is None
    assert not getattr(backend.pipe.unet, "peft_config", {})
    edits = [b.generate(_strengths(b.encode(_photo(25)[None]), smiling=1.5))[0] for b in (backend, plain)]
    assert torch.allclose(edits[0], edits[1], atol=1e-5)


def test_the_command_line_options_reach_the_backend(parts, arcface):
    args = cli.build_parser().parse_args(["serve", "--backend", "diffusion", "--model", str(parts["model"]),
                                          "--clip", str(parts["clip"]), "--face-models", str(arcface[0]),
                                          "--ip-adapter", str(parts["safetensors"]), "--ip-adapter-scale", "0.8"])
    options = cli._backend_options(args)
    assert options["ip_adapter"] == parts["safetensors"] and options["ip_adapter_scale"] == 0.8
    with pytest.raises(ValueError, match="--ip-adapter, --ip-adapter-scale: options of --backend diffusion, not of --backend builtin"):
        build_agent("builtin", ip_adapter=parts["bin"], ip_adapter_scale=0.8)
    agent = build_agent("diffusion", **options)  # as `chatedit serve` builds it
    faceid = agent.editor.backend.faceid
    assert faceid.path == parts["safetensors"] and faceid.scale == pytest.approx(0.8) and faceid.lora is not None
