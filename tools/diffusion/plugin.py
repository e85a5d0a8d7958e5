"""The diffusion backend's registry entry: its options (and their flags), needs and availability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..registry import BackendSpec, Needs, option

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CLIP = "ViT-B-32@laion2b_s34b_b79k"  # open_clip name@pretrained tag


def clip_option():
    """``--clip``, as every backend that reads degrees off its pictures with CLIP declares it."""
    return option(None, "--clip", f"CLIP model for reading degrees: an open_clip folder or NAME@PRETRAINED "
                  f"(default: {DEFAULT_CLIP})")


def reader_option():
    """``--reader``: CLIP or the real readers for age and smiling (the photo backends)."""
    return option(None, "--reader", "who reads age and smiling degrees as the walk steers: clip (default) or real "
                  "(dlib-models' age network and face-api's expression network, pip install -e .[faces]); glasses, "
                  "beard and bangs are read by CLIP either way", choices=("clip", "real"))


@dataclass(frozen=True)
class DiffusionOptions:
    model: str | None = option(None, "--model", "Stable Diffusion pipeline: a local folder or a hub id in the local "
                               f"cache (default: {DEFAULT_MODEL}; SDXL accepted)")
    clip: str | None = clip_option()
    reader: str | None = reader_option()
    adapters: Path | None = option(None, "--adapters", "folder of LoRA slider adapters named after attributes, "
                                   "e.g. smiling.safetensors", type=Path, metavar="DIR")
    preview_vae: str | None = option(None, "--preview-vae", "a tiny autoencoder (diffusers AutoencoderTiny folder "
                                     "or hub id) for cheaper previews")
    ip_adapter: Path | None = option(None, "--ip-adapter", "IP-Adapter FaceID checkpoint (ip-adapter-faceid_sd15.bin "
                                     "or .safetensors) that keeps each photo's identity through its edits; needs "
                                     "--face-models with insightface's recognition model", type=Path, metavar="FILE")
    ip_adapter_scale: float | None = option(None, "--ip-adapter-scale", "how strongly the photo's identity steers "
                                            "each pass (default 0.6; 0 turns it off)", type=float, metavar="SCALE")
    device: str | None = option(None, "--device", "torch device (default: cuda when present, else cpu)")
    steps: int | None = option(None, "--steps", "denoising steps of each photo's inversion and so of every edit pass "
                               "(LEDITS++ edits over the inversion's own steps; default 30; fewer: faster, coarser)",
                               type=int, metavar="N")
    new_face_steps: int | None = option(None, "--new-face-steps", "text-to-image steps drawing a new face (default: "
                                        "25, from prompts/diffusion.yaml)", type=int, metavar="N")
    face_models: Path | None = option(None, "--face-models", "insightface's ONNX models (a folder such as "
                                      "buffalo_l; needs pip install -e .[insightface]): its detector aligns uploads and "
                                      "its ArcFace measures identity", type=Path, metavar="DIR")
    photo_dir: Path | None = option(None)  # set by serve: photos kept to redo inversions after a restart


def _in_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def check(options: DiffusionOptions) -> str | None:
    model = options.model or DEFAULT_MODEL
    if Path(model).exists():
        if not (Path(model) / "model_index.json").is_file():
            return f"--model {model} is not a diffusers pipeline folder (no model_index.json)"
    elif not _in_cache(model, "model_index.json"):
        return f"the pipeline {model} is not on this machine (pass --model FOLDER; nothing is downloaded at run time)"
    if options.reader == "real":
        from .real import real_readers_missing

        missing = real_readers_missing()
        if missing:
            return missing
    clip = options.clip or DEFAULT_CLIP
    if not Path(clip).is_dir() and not _clip_in_cache(clip):
        return f"the CLIP model {clip} is not on this machine (pass --clip FOLDER)"
    return None


def _clip_in_cache(spec: str) -> bool:
    """Whether open_clip's ``NAME@TAG`` weights are in the local hub cache (they are fetched from the hub)."""
    import open_clip

    name, _, tag = spec.partition("@")
    hub = (open_clip.get_pretrained_cfg(name, tag) or {}).get("hf_hub", "").rstrip("/") if tag else ""
    return bool(hub) and any(_in_cache(hub, f) for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))


SPEC = BackendSpec(
    name="diffusion",
    summary="LEDITS++ edits of real photos on Stable Diffusion (diffusers), degrees read by CLIP; LoRA sliders and "
            "IP-Adapter FaceID optional",
    verified="Verified only with tiny random weights (and once at SD 1.5's full architecture, random weights).",
    options=DiffusionOptions,
    needs=Needs(weights="a Stable Diffusion 1.5 pipeline folder (--model) and an open_clip model (--clip)",
                gpu="advised (minutes per edit on a CPU)", extras=("faces",),
                packages=("diffusers", "transformers", "open_clip", "peft")),
    backend="chatedit.tools.diffusion.backend:DiffusionBackend",
    check=check,
)
