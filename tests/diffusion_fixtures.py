"""Tiny random Stable Diffusion parts, built in code and saved in the formats real checkpoints use.

Each builder writes what a downloaded model would hold (a diffusers pipeline folder laid out like
SD 1.5's, a LoRA ``.safetensors`` as ``save_lora_weights`` writes it, an IP-Adapter FaceID checkpoint
laid out as ``ip-adapter-faceid_sd15.bin``, an open_clip ``local-dir``),
so tests go through the library's own loading code offline. The weights are seeded and random:
the parts exercise the machinery on CPU in about a second, not the quality of an edit.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
CONTEXT_LENGTH = 77  # CLIP's prompt length, for SD 1.5 and open_clip alike
# the random pipeline is sensitive: this small a LoRA already moves a 64-px redraw by ~0.06 (weight 0.25) to ~0.13 (1)
LORA_STD = 0.05
# words that become single tokens through merges, so BPE merging is exercised and prompts stay short
MERGED_WORDS = ("photo", "of", "the", "person", "face", "smiling", "smile", "glasses", "with", "hair", "old", "young")


@contextmanager
def _seeded(seed: int):
    """Module initialisers draw from torch's global generator: seed it here and leave the caller's state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _byte_symbols() -> list[str]:
    """The 256 printable characters byte-level BPE stands in for the bytes of any text, in a fixed order."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _merge_chain(word: str) -> list[tuple[str, str]]:
    """Merges that join ``word`` from the left into one end-of-word token: p+h, ph+o, ..., phot+o</w>."""
    parts = [*word[:-1], word[-1] + END_OF_WORD]
    merges = []
    while len(parts) > 1:
        merges.append((parts[0], parts[1]))
        parts = [parts[0] + parts[1], *parts[2:]]
    return merges


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer (``vocab.json``, ``merges.txt`` and its configs, as SD 1.5 ships it) over a tiny vocabulary.

    Every byte, alone and ending a word, is a token, so any text tokenizes; a few common words merge into one.
    """
    folder = Path(folder)
    # 1. vocabulary: bytes, bytes ending a word, the merged words, then the two specials last (as in CLIP)
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + END_OF_WORD for s in symbols])}
    merges = list(dict.fromkeys(m for word in MERGED_WORDS for m in _merge_chain(word)))
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab[BOS], vocab[EOS] = len(vocab), len(vocab) + 1

    # 2. the files CLIPTokenizer.save_pretrained wrote for SD 1.5; the pad token is end-of-text
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{left} {right}" for left, right in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": CONTEXT_LENGTH, "do_lower_case": True,
              "errors": "replace", "add_prefix_space": False, **specials}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def build_pipeline(folder: Path, seed: int = 0, resolution: int = 64) -> Path:
    """A random SD-1.5-shaped pipeline (UNet, VAE, CLIP text model, tokenizer, SDE-DPM scheduler) saved in ``folder``.

    The VAE halves the picture and the UNet halves the latent twice, with cross-attention at a quarter of
    the latent, where LEDITS++ reads its attention masks; ``resolution`` must be a multiple of 32.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if resolution % 32 != 0:
        raise ValueError(f"resolution has to be a multiple of 32 (LEDITS++ inverts such sizes only) but is {resolution}")
    folder = Path(folder)
    write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")

    # 1. the components, each seeded on its own so one does not shift another's weights
    with _seeded(seed):
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, sample_size=resolution, layers_per_block=1,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(32, 32), norm_num_groups=8,
        )  # (3, R, R) pictures <-> (4, R/2, R/2) latents
    with _seeded(seed + 1):
        unet = UNet2DConditionModel(
            sample_size=resolution // 2, in_channels=4, out_channels=4, layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            block_out_channels=(16, 32, 32), norm_num_groups=8, cross_attention_dim=32, attention_head_dim=8,
        )  # latents R/2 -> R/4 -> R/8; cross-attention at R/8 (and in the middle block)
    with _seeded(seed + 2):
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=CONTEXT_LENGTH, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
    # the scheduler SD 1.5 ships; our loader swaps in the one LEDITS++ needs, as it must for real folders
    scheduler = PNDMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
                              set_alpha_to_one=False)

    # 2. saved as SD 1.5 is: model_index.json naming StableDiffusionPipeline, one folder per component
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    # transformers 5 saves the tokenizer as tokenizer.json; keep the vocab.json / merges.txt that SD 1.5 has
    shutil.rmtree(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer")
    return folder


def build_lora(pipeline_folder: Path, out_file: Path, seed: int = 0, rank: int = 2) -> Path:
    """A random rank-``rank`` LoRA on the UNet's attention projections, saved as ``save_lora_weights`` writes one.

    Both LoRA matrices are random (B is not zero as in training's start), so at weight 1 it changes the output.
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    out_file = Path(out_file)
    if out_file.suffix != ".safetensors":
        raise ValueError(f"a LoRA file has to end in .safetensors but is {out_file}")
    unet = UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")
    # lora_alpha == rank: scale 1, which is also what a loader infers from a file without metadata
    with _seeded(seed):  # peft's own initialisation, overwritten below
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * LORA_STD)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(out_file.parent, unet_lora_layers=layers, weight_name=out_file.name,
                                              safe_serialization=True)
    return out_file


def faceid_state_dict(pipeline_folder: Path, seed: int = 0, lora_rank: int | None = 2, id_dim: int = 512,
                      tokens: int = 4) -> dict[str, dict[str, torch.Tensor]]:
    """A random IP-Adapter FaceID checkpoint for the pipeline's UNet, laid out as ``ip-adapter-faceid_sd15.bin``.

    ``image_proj`` is FaceID's MLP (``proj.0``: id_dim -> 2·id_dim, GELU, ``proj.2``: -> tokens × C, ``norm``);
    ``ip_adapter`` numbers the UNet's attention processors in order, as the published file does: every
    cross-attention one (odd numbers, after its self-attention) has ``to_k_ip`` / ``to_v_ip`` (inner × C),
    and with ``lora_rank`` every one has the LoRA FaceID was trained with (``to_q_lora.down`` / ``.up``, ...).
    """
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")
    cross = unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(seed)

    def linear(d_out: int, d_in: int, std: float | None = None) -> torch.Tensor:
        return torch.randn(d_out, d_in, generator=g) * (std if std is not None else d_in**-0.5)

    image_proj = {"proj.0.weight": linear(2 * id_dim, id_dim), "proj.0.bias": torch.randn(2 * id_dim, generator=g) * 0.1,
                  "proj.2.weight": linear(tokens * cross, 2 * id_dim), "proj.2.bias": torch.zeros(tokens * cross),
                  "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
    ip_adapter = {}
    for number, name in enumerate(unet.attn_processors):
        attention = unet.get_submodule(name.removesuffix(".processor"))
        inner = attention.to_q.out_features
        if name.endswith("attn2.processor"):
            if number % 2 != 1:
                raise ValueError(f"cross-attention {name} is processor {number}; the published layout numbers them odd")
            ip_adapter[f"{number}.to_k_ip.weight"] = linear(inner, cross)
            ip_adapter[f"{number}.to_v_ip.weight"] = linear(inner, cross)
        if lora_rank:
            for part, d_in in (("to_q", attention.to_q.in_features), ("to_k", attention.to_k.in_features),
                               ("to_v", attention.to_v.in_features), ("to_out", inner)):
                ip_adapter[f"{number}.{part}_lora.down.weight"] = linear(lora_rank, d_in, LORA_STD)
                ip_adapter[f"{number}.{part}_lora.up.weight"] = linear(inner, lora_rank, LORA_STD)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def build_faceid(pipeline_folder: Path, out_file: Path, seed: int = 0, lora_rank: int | None = 2) -> Path:
    """``faceid_state_dict`` saved as the published checkpoint is: ``torch.save`` of the two state dicts for a
    ``.bin``; for a ``.safetensors`` one flat file with keys prefixed ``image_proj.`` / ``ip_adapter.``."""
    from safetensors.torch import save_file

    out_file = Path(out_file)
    state = faceid_state_dict(pipeline_folder, seed, lora_rank)
    if out_file.suffix == ".bin":
        torch.save(state, out_file)
    elif out_file.suffix == ".safetensors":
        save_file({f"{part}.{key}": value.contiguous() for part, tensors in state.items()
                   for key, value in tensors.items()}, out_file)
    else:
        raise ValueError(f"a FaceID checkpoint has to end in .bin or .safetensors but is {out_file}")
    return out_file


def build_open_clip(folder: Path, seed: int = 0) -> Path:
    """A random ViT CLIP in open_clip's ``local-dir:`` layout (``open_clip_config.json``, ``open_clip_model.safetensors``).

    The text tower uses open_clip's bundled tokenizer (49,408 tokens), so nothing is fetched.
    """
    import open_clip
    from safetensors.torch import save_file

    config = {
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
            "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }
    with _seeded(seed):
        model = open_clip.CLIP(**config["model_cfg"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    return folder
