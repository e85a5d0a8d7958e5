"""The tiny diffusion fixtures load through each library's own public loading path, offline, and behave.

These guard the fixtures the diffusion backend's tests stand on: if a library changes its formats,
the failure shows up here, next to the file that writes them, not as a puzzle in a backend test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffusion_fixtures import MERGED_WORDS, build_lora, build_open_clip, build_pipeline, write_tokenizer

SIZE = 64
CONCEPTS = {"editing_prompt": ["smiling", "glasses"], "reverse_editing_direction": [False, True],
            "edit_guidance_scale": [5.0, 3.0], "edit_threshold": [0.9, 0.9]}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixtures")
    model = build_pipeline(root / "sd", resolution=SIZE)
    return {"model": model, "lora": build_lora(model, root / "adapters" / "smiling.safetensors"),
            "clip": build_open_clip(root / "clip")}


def _ledits(folder):
    """Through the backend's loader (``--model DIR``), which sets LEDITS++'s scheduler."""
    from chatedit.tools.diffusion.pipeline import load_pipeline

    return load_pipeline(str(folder), device="cpu")


def _photo() -> Image.Image:
    """A face-like blob on a gradient, SIZE x SIZE."""
    y, x = np.mgrid[-1:1:SIZE * 1j, -1:1:SIZE * 1j]
    blob = (x**2 / 0.3 + y**2 / 0.5 < 1)
    rgb = np.stack([0.3 * (x + 1) / 2 + blob * c for c in (0.8, 0.5, 0.3)], axis=-1)
    return Image.fromarray((rgb / rgb.max() * 255).astype(np.uint8))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def test_the_tokenizer_reads_any_text_and_merges_common_words(tmp_path):
    from transformers import CLIPTokenizer

    write_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer) < 1000 and tokenizer.model_max_length == 77
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    ids = tokenizer("A photo of a Smiling person with glasses", padding="max_length").input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    words = ["a", "photo", "of", "a", "smiling", "person", "with", "glasses"]
    assert tokenizer.convert_ids_to_tokens(ids[1:9]) == [f"{w}</w>" for w in words]
    assert all(len(tokenizer(w, add_special_tokens=False).input_ids) == 1 for w in MERGED_WORDS)
    odd = tokenizer("Café — naïve 😀 #42", add_special_tokens=False).input_ids
    assert tokenizer.eos_token_id not in odd  # every byte has a token: nothing falls to the unknown token
    assert tokenizer.decode(odd) == "café — naïve 😀 # 4 2"


def test_the_folder_is_an_sd15_pipeline_that_ledits_inverts_and_edits(parts):
    folder = parts["model"]
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert {p.name for p in (folder / "tokenizer").iterdir()} == {"vocab.json", "merges.txt", "tokenizer_config.json",
                                                                  "special_tokens_map.json"}
    pipe = _ledits(folder)
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == SIZE
    pipe.invert(image=_photo(), num_inversion_steps=6, skip=0.15, generator=torch.Generator().manual_seed(0))
    latents = []

    def keep(pipeline, step, timestep, tensors):
        latents.append(tensors["latents"].shape)
        return tensors

    edited = pipe(**CONCEPTS, output_type="pt", callback_on_step_end=keep,
                  callback_on_step_end_tensor_inputs=["latents"]).images
    assert edited.shape == (1, 3, SIZE, SIZE)
    assert latents == [(1, 4, SIZE // 2, SIZE // 2)] * 6
    redrawn = pipe(editing_prompt=None, output_type="pt").images
    assert float((edited - redrawn).abs().mean()) > 0.01  # the concepts change the picture


def test_without_an_edit_the_inversion_redraws_the_vae_reconstruction(parts):
    pipe = _ledits(parts["model"])
    inverted = pipe.invert(image=_photo(), num_inversion_steps=6, skip=0.15, generator=torch.Generator().manual_seed(0))
    redrawn = pipe(editing_prompt=None, output_type="pt").images[0]
    through_vae = _tensor(inverted.vae_reconstruction_images[0])
    assert float((redrawn - through_vae).abs().max()) < 2 / 255  # exact up to the 8-bit reconstruction image


def test_the_lora_loads_by_name_changes_the_edit_and_weight_zero_is_no_adapter(parts):
    assert all(key.startswith("unet.") for key in load_file(parts["lora"]))
    pipe = _ledits(parts["model"])
    pipe.invert(image=_photo(), num_inversion_steps=6, skip=0.15, generator=torch.Generator().manual_seed(0))
    plain = pipe(**CONCEPTS, output_type="pt").images
    pipe.load_lora_weights(str(parts["lora"]), adapter_name="smiling")
    pipe.set_adapters(["smiling"], adapter_weights=[1.0])
    adapted = pipe(**CONCEPTS, output_type="pt").images
    pipe.set_adapters(["smiling"], adapter_weights=[0.0])
    off = pipe(**CONCEPTS, output_type="pt").images
    assert float((adapted - plain).abs().mean()) > 0.01
    assert torch.allclose(off, plain, atol=1e-6)


def test_the_open_clip_folder_loads_offline_with_its_weights_and_encodes(parts):
    import open_clip

    name = f"local-dir:{parts['clip']}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tokenizer = open_clip.get_tokenizer(name)
    saved = load_file(parts["clip"] / "open_clip_model.safetensors")
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
    with torch.no_grad():
        image = model.encode_image(preprocess(_photo())[None])
        text = model.encode_text(tokenizer(["a photo of a smiling person", "glasses"]))
    assert image.shape == (1, 32) and text.shape == (2, 32)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()
    assert not torch.allclose(text[0], text[1])


def test_builds_repeat_for_a_seed_and_differ_across_seeds(tmp_path):
    first, again, other = (build_open_clip(tmp_path / name, seed=s) for name, s in (("a", 0), ("b", 0), ("c", 1)))
    weights = [load_file(f / "open_clip_model.safetensors") for f in (first, again, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.equal(weights[0]["text_projection"], weights[2]["text_projection"])
