"""The StyleGAN2 backend's registry entry: its options (and their flags), needs and availability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..registry import BackendSpec, Needs, option


@dataclass(frozen=True)
class StyleGAN2Options:
    weights: Path | None = option(None, "--weights", "Talk-to-Edit's pretrained_models folder", type=Path,
                                  metavar="DIR")
    resolution: int = option(128, "--resolution", "which of Talk-to-Edit's generators: 128 or 1024 px", type=int,
                             choices=(128, 1024))
    device: str | None = option(None, "--device", "torch device (default: cuda when present, else cpu)")
    face_models: Path | None = option(None, "--face-models", "insightface's ONNX models (a folder such as "
                                      "buffalo_l; needs pip install -e .[insightface]): its detector aligns uploads and "
                                      "its ArcFace measures identity", type=Path, metavar="DIR")
    half: bool | None = option(None, "--half", "draw faces in float16 on the GPU (default: on with CUDA, off on a "
                               "CPU; --half on a CPU is refused)", boolean=True)
    pti_steps: int | None = option(None, "--pti-steps", "Pivotal Tuning steps on each upload after its inversion "
                                   "(0: off; default: 100 with CUDA, off on a CPU)", type=int, metavar="N")
    inversion: str = option("w", "--inversion", "how a photo is inverted: w, one W code on every layer as "
                            "Talk-to-Edit's fields were trained on (default), or wplus, layers free to differ (a "
                            "closer fit the fields never saw)", choices=("w", "wplus"))
    truncation: float = option(1.0, "--truncation", "pull new faces towards the mean face: 1 none (default, as "
                               "Talk-to-Edit samples), smaller values more typical faces", type=float, metavar="PSI")
    field_steps: int = option(8, "--field-steps", "Talk-to-Edit field steps per degree, each re-evaluating the "
                              "field; a multiple of 8, the walk's steps per degree (default 8, one per walk step; "
                              "unmeasured on the real models)", type=int, metavar="N")
    photo_dir: Path | None = option(None)  # set by serve: tuned photos kept to redo their tunes after a restart
    pti_cache: int = option(4)  # tunes held in memory (bench edit holds one per face)


def check(options: StyleGAN2Options) -> str | None:
    if options.weights is None:
        return "needs --weights DIR: Talk-to-Edit's pretrained_models folder (not downloadable here)"
    from .backend import missing_files

    missing = missing_files(options.weights, options.resolution)
    return f"missing in {options.weights}: {', '.join(missing)}" if missing else None


SPEC = BackendSpec(
    name="stylegan2",
    summary="Talk-to-Edit's StyleGAN2 generator, semantic fields, attribute predictor and ArcFace; edits photos "
            "by W inversion (and Pivotal Tuning on a GPU)",
    verified="Verified only with random weights saved in the published formats (loaders checked against "
             "Talk-to-Edit's own code).",
    options=StyleGAN2Options,
    needs=Needs(weights="Talk-to-Edit's pretrained_models folder (--weights)", gpu="advised (1024 px, Pivotal Tuning)",
                extras=("faces",)),
    backend="chatedit.tools.stylegan2.backend:StyleGAN2Backend",
    check=check,
)
