"""Loading a Stable Diffusion checkpoint as diffusers' LEDITS++ pipeline, once per process.

``--model`` takes a local pipeline folder (``model_index.json`` plus component folders, as
``save_pretrained`` writes it) or a Hugging Face hub id, read through the hub's normal cache;
with ``HF_HUB_OFFLINE=1`` only what is cached already can load. SD 1.x/2.x folders load as
``LEditsPPPipelineStableDiffusion``, SDXL ones as ``LEditsPPPipelineStableDiffusionXL``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .plugin import DEFAULT_MODEL

logger = logging.getLogger(__name__)


class PipelineLoadError(ValueError):
    """A model that cannot be loaded, with a sentence that says why and what to do."""


def _model_index(model: str) -> dict:
    """The pipeline's ``model_index.json``, from the folder or the hub cache."""
    folder = Path(model).expanduser()
    if folder.exists():
        index = folder / "model_index.json"
        if not folder.is_dir() or not index.is_file():
            raise PipelineLoadError(f"{model} is not a diffusers pipeline folder: it has no model_index.json "
                                    "(save one with `pipeline.save_pretrained(folder)`)")
        return json.loads(index.read_text())
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)

    try:
        return json.loads(Path(hf_hub_download(model, "model_index.json")).read_text())
    except LocalEntryNotFoundError as error:
        raise PipelineLoadError(
            f"the model {model!r} is not in the local Hugging Face cache and cannot be downloaded now "
            "(offline, or HF_HUB_OFFLINE=1); pass --model with a local pipeline folder, or download it first"
        ) from error
    except (RepositoryNotFoundError, EntryNotFoundError, HFValidationError) as error:
        raise PipelineLoadError(f"{model!r} is neither a local folder nor a diffusers pipeline on the hub") from error


def load_pipeline(model: str = DEFAULT_MODEL, device: str | None = None, dtype: torch.dtype | None = None):
    """The LEDITS++ pipeline for ``model`` on ``device`` (CUDA when present), half precision on a GPU."""
    from diffusers import LEditsPPPipelineStableDiffusion, LEditsPPPipelineStableDiffusionXL

    index = _model_index(model)
    kind = str(index.get("_class_name", ""))
    if "Pipeline" not in kind or "unet" not in index:
        raise PipelineLoadError(f"{model} holds a {kind or 'unknown'} model, "
                                "not a Stable Diffusion pipeline with a UNet")
    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise PipelineLoadError(f"--device {device} is not a torch device (e.g. cpu, cuda, cuda:1)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineLoadError(f"--device {device} asks for a CUDA GPU, but torch sees none on this machine")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    cls = LEditsPPPipelineStableDiffusionXL if "XL" in kind else LEditsPPPipelineStableDiffusion
    try:
        pipe = cls.from_pretrained(model, dtype=dtype)
    except (OSError, ValueError) as error:
        raise PipelineLoadError(f"could not load the pipeline {model}: {error}") from error
    logger.info("loaded %s (%s) on %s in %s", model, cls.__name__, device, dtype)
    return ready(pipe, device)


def ready(pipe, device: torch.device | str):
    """A LEDITS++ pipeline set up as every pass of the backend expects, on ``device``."""
    from diffusers import DPMSolverMultistepScheduler

    # LEDITS++'s inversion is defined for the multistep SDE solver (or DDIM); set it explicitly. The
    # last step must use its noise map too (sigma_min, second order), or a redraw with no edit ends
    # on the UNet's guess of the photo instead of the photo (0.16 mean error on the test model).
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, algorithm_type="sde-dpmsolver++", solver_order=2, final_sigmas_type="sigma_min",
        lower_order_final=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
