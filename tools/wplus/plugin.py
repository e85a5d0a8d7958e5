"""The W+ adapter backend's registry entry: its options (and their flags), needs and availability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..diffusion.plugin import clip_option, reader_option
from ..registry import BackendSpec, Needs, option

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_PROMPT = "a close-up photo of a person, natural light"
DEFAULT_NEGATIVE = "monochrome, lowres, bad anatomy, worst quality, low quality"  # the published demo's
# in Talk-to-Edit's pretrained_models folder
FIELDS, PREDICTOR, GENERATOR = "1024_field", "predictor_1024.pth.tar", "stylegan2_1024.pth"


@dataclass(frozen=True)
class WPlusOptions:
    wplus_adapter: Path | None = option(None, "--wplus-adapter", "the W+ adapter checkpoint (wplus_adapter.bin from "
                                        "csxmli2016/w-plus-adapter's v1 release)", type=Path, metavar="FILE")
    e4e: Path | None = option(None, "--e4e", "e4e's FFHQ encoder (e4e_ffhq_encode.pt, from the same release or "
                              "omertov/encoder4editing) that turns uploads into W+ codes", type=Path, metavar="FILE")
    weights: Path | None = option(None, "--weights", "Talk-to-Edit's pretrained_models folder: its 1024_field "
                                  "fields walk the codes; with predictor_1024.pth.tar degrees are read on the "
                                  "StyleGAN2 rendering (with stylegan2_1024.pth drawn by it, else by e4e's own "
                                  "generator)", type=Path, metavar="DIR")
    model: str | None = option(None, "--model", "Stable Diffusion 1.5 pipeline: a local folder or a hub id in the "
                               f"local cache (default: {DEFAULT_MODEL})")
    prompt: str | None = option(None, "--prompt", f"the scene faces are drawn in until the chat changes it (default: "
                                f"'{DEFAULT_PROMPT}')", metavar="TEXT")
    wplus_scale: float | None = option(None, "--wplus-scale", "how strongly the W+ code steers each pass (default 1.0, "
                                       "the published demo's; 0: the prompt alone)", type=float, metavar="SCALE")
    directions: Path | None = option(None, "--directions", "folder of InterFaceGAN W directions (e4e's smile.pt, "
                                     "age.pt, or <attribute>.pt) for the linear baseline", type=Path, metavar="DIR")
    clip: str | None = clip_option()
    reader: str | None = reader_option()
    steps: int | None = option(None, "--steps", "denoising steps of each pass (default 30)", type=int, metavar="N")
    field_steps: int = option(8, "--field-steps", "Talk-to-Edit field steps per degree, each re-evaluating the "
                              "field; a multiple of 2, the walk's steps (SD passes) per degree (default 8; "
                              "unmeasured on the real models)", type=int, metavar="N")
    device: str | None = option(None, "--device", "torch device (default: cuda when present, else cpu)")
    face_models: Path | None = option(None, "--face-models", "insightface's ONNX models (a folder such as "
                                      "buffalo_l; needs pip install -e .[insightface]): its detector aligns uploads "
                                      "and its ArcFace measures identity", type=Path, metavar="DIR")
    photo_dir: Path | None = option(None)  # set by serve; nothing to keep here (a face's latent holds all of it)


def check(options: WPlusOptions) -> str | None:
    from chatedit.attributes import attribute_names

    from ..stylegan2 import talk_to_edit as tte

    for flag, path, what in (("--wplus-adapter", options.wplus_adapter, "FILE: wplus_adapter.bin"),
                             ("--e4e", options.e4e, "FILE: e4e_ffhq_encode.pt"),
                             ("--weights", options.weights, "DIR: Talk-to-Edit's pretrained_models folder")):
        if path is None:
            return f"needs {flag} {what} (not downloadable here)"
        if not Path(path).exists():
            return f"{flag} {path} does not exist"
    fields = [Path(options.weights) / FIELDS / tte.attribute(a).field_file for a in attribute_names()]
    missing = [str(p) for p in fields if not p.is_file()]
    if missing:
        return f"missing in {options.weights}: {', '.join(missing)}"
    from ..diffusion.plugin import DiffusionOptions, check as diffusion_check

    # the pipeline, CLIP and the real readers are checked as the diffusion backend checks them; CLIP is
    # not needed when Talk-to-Edit's predictor reads the degrees and no --clip or --reader asks for it
    why = diffusion_check(DiffusionOptions(model=options.model, clip=options.clip, reader=options.reader))
    clip_unneeded = ((Path(options.weights) / PREDICTOR).is_file() and options.clip is None
                     and options.reader is None)
    if why is not None and not (clip_unneeded and why.startswith("the CLIP model")):
        return why
    return None


def load_backend(options: WPlusOptions):
    """The backend from its options: SD 1.5, e4e, the adapter, Talk-to-Edit's files and the readers."""
    from .backend import WPlusBackend

    return WPlusBackend.load(wplus_adapter=options.wplus_adapter, e4e=options.e4e, weights=options.weights,
                             model=options.model, prompt=options.prompt, scale=options.wplus_scale,
                             directions=options.directions, clip=options.clip, reader=options.reader,
                             steps=options.steps, field_steps_per_degree=options.field_steps, device=options.device,
                             face_models=options.face_models)


SPEC = BackendSpec(
    name="wplus",
    summary="the W+ adapter: a face is a StyleGAN W+ code (e4e for uploads) drawn by Stable Diffusion 1.5 in a scene "
            "the chat can change; Talk-to-Edit's fields (or InterFaceGAN directions) walk the code",
    verified="Verified only with random weights saved in the published layouts (wplus_adapter.bin, "
             "e4e_ffhq_encode.pt, Talk-to-Edit's 1024 px files) on a tiny Stable Diffusion pipeline.",
    options=WPlusOptions,
    needs=Needs(weights="wplus_adapter.bin (--wplus-adapter), e4e_ffhq_encode.pt (--e4e), Talk-to-Edit's "
                        "pretrained_models (--weights), SD 1.5 (--model)",
                gpu="advised (an SD pass per walk step)", extras=("faces",),
                packages=("diffusers", "transformers", "open_clip")),
    backend="chatedit.tools.wplus.backend:WPlusBackend",
    check=check,
)
