"""The diffusion backend: real-photo edits with LEDITS++ on any Stable Diffusion checkpoint.

A face here is a photo plus edit strengths. The photo is inverted once (LEDITS++'s edit-friendly
inversion: the noise maps that redraw exactly this photo); every edit then redraws it from those
noise maps with one edit concept per attribute whose strength is not zero, a negative strength
walking the concept backwards ("less smile" is "smiling" reversed), so several attribute edits
apply together in one denoising pass and the rest of the face is kept by LEDITS++'s masks.
Attributes with a LoRA slider adapter use the adapter, at a signed weight, instead of a concept.

The latent the walk moves is therefore small: (1, A + 2) = the strengths of the A attributes in
degrees of change, then the 48-bit key of the photo in two 24-bit halves (exact in float32). The
walk steps along one strength at a time and re-reads the degree reader after each step (CLIP; with
``--reader real`` age and smiling by ``chatedit.readers``, see ``real.py``), so edits stop at the
requested degree as on the other backends. Undo, redo and saved sessions keep
working because an entry of the history is just such a vector.

Sessions share one pipeline. LEDITS++ keeps the last inversion on the pipeline object, so the
backend keeps every photo's inversion in its own cache (by photo key) and puts it back on the
pipeline, under a lock, before each pass. With ``photo_dir`` the photos are also written to disk,
so an inversion dropped from the cache (or lost in a restart) is redone from the photo. The caches
(inversions by photo, pictures by latent) are LRUs behind one lock of their own, held only to read
or write them; a photo that one session is inverting is waited for by the others, never inverted twice.

With an IP-Adapter FaceID checkpoint (``faceid.py``) each photo's insightface embedding, computed
once and kept with its inversion, is the image prompt of that photo's inversion and every pass.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from cachetools import LRUCache
from PIL import Image

from chatedit.attributes import attribute_names
from chatedit.images import from_pil

from ..align import align_face, detect_face, face_embedding, insightface_app
from ..backend import Backend, BackendError, Capabilities, PredictorReading
from ..keys import join_key, split_key
from .faceid import DEFAULT_SCALE, FaceID, load_faceid
from .plugin import DEFAULT_CLIP
from .reader import ClipDegreeReader
from .real import READERS, PhotoIdentity, RealDegreeReader

logger = logging.getLogger(__name__)

MAX_DRAWN = 256  # pictures kept by latent (~3 MB each at 512 px)
MAX_PIXELS = 40_000_000  # larger photos are refused at intake, before anything is decoded further
OUT_OF_MEMORY = ("the GPU ran out of memory for this photo, even at a lower resolution; try again when fewer "
                 "people are editing")


def load_texts() -> dict:
    """Concepts, strengths and reader sentences from ``prompts/diffusion.yaml``."""
    return yaml.safe_load(files("chatedit.prompts").joinpath("diffusion.yaml").read_text())


@dataclass
class Inversion:
    """One photo's LEDITS++ inversion: what ``invert`` leaves on the pipeline, kept off it."""

    photo: torch.Tensor  # (3, R, R) uint8, what was inverted
    timesteps: torch.Tensor
    init_latents: torch.Tensor
    zs: torch.Tensor
    schedule_length: int  # the scheduler's timestep count after inverting
    reconstruction: torch.Tensor | None = None  # (3, R, R) in [0, 1]: the photo redrawn with no edit
    identity: torch.Tensor | None = None  # (D,) the photo's ArcFace embedding: FaceID's image prompt, when in use

    @classmethod
    def take(cls, pipe, photo: torch.Tensor, identity: torch.Tensor | None = None) -> "Inversion":
        return cls(photo, pipe.inversion_steps, pipe.init_latents, pipe.zs, len(pipe.scheduler.timesteps),
                   identity=identity)

    def put(self, pipe) -> None:
        pipe.inversion_steps, pipe.init_latents, pipe.zs = self.timesteps, self.init_latents, self.zs
        pipe.eta, pipe.batch_size = 1.0, self.init_latents.shape[0]
        pipe.scheduler.set_timesteps(self.schedule_length)


def photo_key(photo: torch.Tensor) -> int:
    """A 48-bit key of a photo's pixels."""
    return int.from_bytes(hashlib.sha256(photo.contiguous().numpy().tobytes()).digest()[:6], "big")


class DiffusionBackend(PhotoIdentity, Backend):
    name = "diffusion"
    # every walk step is a whole denoising pass: two per degree, twelve per edit at most, each shown
    # forming (previews) and once in the edit-path GIF; the VAE redraws any photo, so uploads are
    # refused at intake (no face) rather than by their fit
    capabilities = Capabilities(substeps=2, max_steps=12, previews=True, gif_frames_per_step=1, photos=True)

    def __init__(self, pipe, reader: ClipDegreeReader, texts: dict | None = None,
                 adapters: dict[str, str | Path] | None = None, resolution: int | None = None,
                 inversion_steps: int = 30, skip: float = 0.15, preview_every: int = 5, seed: int = 0,
                 photo_dir: str | Path | None = None, max_photos: int = 32, face_models: str | Path | None = None,
                 preview_vae=None, ip_adapter: str | Path | None = None, ip_adapter_scale: float | None = None,
                 new_face_steps: int | None = None, degree_reader: str = "clip"):
        if degree_reader not in READERS:
            raise ValueError(f"--reader must be one of {', '.join(READERS)}, got {degree_reader!r}")
        for flag, steps in (("--steps", inversion_steps), ("--new-face-steps", new_face_steps)):
            if steps is not None and steps < 1:
                raise ValueError(f"{flag} must be at least 1, got {steps}")
        self.pipe = pipe
        self.device = pipe.device
        self.unet_processors = dict(pipe.unet.attn_processors)  # the UNet's own attention, put back after each pass
        self.texts = texts or load_texts()
        self.attributes = attribute_names()
        self.clip_reader = reader  # glasses, beard and bangs always; age and smiling too unless --reader real
        self.reader = RealDegreeReader(reader, self.attributes) if degree_reader == "real" else reader
        self.degree_reader = degree_reader
        self.resolution = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
        self.inversion_steps, self.skip, self.preview_every, self.seed = inversion_steps, skip, preview_every, seed
        self.new_face_steps = int(self.texts["new_face"]["steps"]) if new_face_steps is None else new_face_steps
        self.photo_dir = Path(photo_dir) if photo_dir else None
        if max_photos < 1:
            raise ValueError(f"max_photos must be at least 1, got {max_photos}")
        self.face_models = face_models
        self.preview_vae = preview_vae  # e.g. a tiny AutoencoderTiny: cheaper previews than the pipeline's VAE
        faces = insightface_app(face_models)
        self.insightface = faces if faces is not None and "recognition" in faces.models else None
        self.photos: LRUCache[int, Inversion] = LRUCache(maxsize=max_photos)
        # recent pictures by latent: showing a face again (the page, undo, the GIF) costs no pass
        self.drawn: LRUCache[bytes, torch.Tensor] = LRUCache(maxsize=MAX_DRAWN)
        self.inverting: dict[int, Future] = {}  # photo key -> its inversion, while one session makes it
        self.cache_lock = threading.Lock()  # guards photos, drawn and inverting; never held across a pass
        self.text2image = None  # for new faces, made on first use from the same components
        self.lock = threading.RLock()  # the pipeline holds one inversion and one set of adapter weights at a time
        self.adapters: dict[str, float] = {}  # attribute -> LoRA weight per degree
        self.faceid: FaceID | None = None  # IP-Adapter FaceID: each photo's identity as an image prompt
        for name, path in (adapters or {}).items():
            self.load_adapter(name, path)
        if ip_adapter is not None:
            self.load_ip_adapter(ip_adapter, DEFAULT_SCALE if ip_adapter_scale is None else ip_adapter_scale)
        elif ip_adapter_scale is not None:
            raise ValueError(f"--ip-adapter-scale {ip_adapter_scale} needs --ip-adapter FILE")

    @classmethod
    def load(cls, model: str | None = None, clip: str = DEFAULT_CLIP, adapters: str | Path | None = None,
             preview_vae: str | None = None, device: str | None = None, **options) -> "DiffusionBackend":
        """The pipeline for ``model`` (a folder or hub id), the CLIP degree reader, and any LoRA sliders
        in ``adapters`` (a folder with ``<attribute>.safetensors`` files). ``options`` go to the constructor,
        e.g. ``ip_adapter`` (an IP-Adapter FaceID file; needs ``face_models``) and ``ip_adapter_scale``."""
        from .pipeline import DEFAULT_MODEL, load_pipeline
        from .reader import degree_prompts, load_clip

        pipe = load_pipeline(model or DEFAULT_MODEL, device=device)
        texts = load_texts()
        clip_model, tokenizer = load_clip(clip, pipe.device)
        reader = ClipDegreeReader(clip_model, tokenizer, degree_prompts(texts), pipe.device)
        found = {}
        if adapters is not None:
            folder = Path(adapters)
            if not folder.is_dir():
                raise FileNotFoundError(f"--adapters {folder} is not a folder")
            found = {p.stem: p for p in sorted(folder.glob("*.safetensors"))}
            unknown = sorted(set(found) - set(attribute_names()))
            if unknown:
                raise ValueError(f"adapter files must be named after an attribute ({', '.join(attribute_names())}); "
                                 f"got {', '.join(unknown)} in {folder}")
        tiny = None
        if preview_vae is not None:
            from diffusers import AutoencoderTiny

            tiny = AutoencoderTiny.from_pretrained(preview_vae, dtype=pipe.vae.dtype).to(pipe.device)
        return cls(pipe, reader, texts, adapters=found, preview_vae=tiny, **options)

    @classmethod
    def from_options(cls, options) -> "DiffusionBackend":
        """The backend from its registry options (``plugin.DiffusionOptions``)."""
        extra = {k: v for k, v in (("ip_adapter", options.ip_adapter), ("ip_adapter_scale", options.ip_adapter_scale),
                                   ("photo_dir", options.photo_dir), ("inversion_steps", options.steps),
                                   ("new_face_steps", options.new_face_steps),
                                   ("degree_reader", options.reader)) if v is not None}
        return cls.load(model=options.model, clip=options.clip or DEFAULT_CLIP, adapters=options.adapters,
                        preview_vae=options.preview_vae, device=options.device, face_models=options.face_models,
                        **extra)

    # ----------------------------------------------------------------- adapters

    def load_adapter(self, attribute: str, path: str | Path) -> None:
        """A LoRA slider for ``attribute``; from now on that attribute is edited with it, not a concept."""
        if attribute not in self.attributes:
            raise ValueError(f"no attribute {attribute!r} for adapter {path}; attributes: {', '.join(self.attributes)}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"adapter file {path} does not exist")
        with self.lock:
            self.pipe.load_lora_weights(str(path), adapter_name=attribute)
            self.adapters[attribute] = float(self.texts["attributes"][attribute]["adapter_weight"])
            self._set_adapter_weights(torch.zeros(len(self.attributes)))

    def _set_adapter_weights(self, strengths: torch.Tensor, identity: bool = False) -> None:
        """The sliders at ``strengths``; FaceID's own LoRA on only for a pass with a face's ``identity``."""
        names = list(self.adapters)
        weights = [float(strengths[self.attributes.index(n)]) * self.adapters[n] for n in names]
        if self.faceid is not None and self.faceid.lora is not None:
            names.append(self.faceid.lora)
            weights.append(1.0 if identity else 0.0)
        if names:
            self.pipe.set_adapters(names, adapter_weights=weights)

    def load_ip_adapter(self, path: str | Path, scale: float = DEFAULT_SCALE) -> None:
        """An IP-Adapter FaceID checkpoint: from now on each photo is inverted and edited with its own
        insightface embedding as an image prompt, at ``scale`` (0: off). Photos inverted before are dropped."""
        if self.insightface is None:
            where = (f"in --face-models {self.face_models}" if self.face_models is not None
                     else "(pass --face-models DIR with insightface's buffalo_l models)")
            raise ValueError(f"--ip-adapter {path} needs insightface's face recognition model for the photo's "
                             f"identity embedding (e.g. w600k_r50.onnx beside det_10g.onnx, and pip install -e "
                             f".[faces]); none was found {where}")
        with self.lock:
            self.faceid = load_faceid(self.pipe, path, scale)
            self._set_adapter_weights(torch.zeros(len(self.attributes)))
            with self.cache_lock:
                self.photos.clear()  # inverted without the adapter: no longer what a pass with it redraws
                self.drawn.clear()

    # ----------------------------------------------------------------- photos

    def intake(self, picture: Image.Image) -> torch.Tensor:
        """A photo as the face the model edits: detected, aligned, at the pipeline's resolution."""
        if picture.width * picture.height > MAX_PIXELS:
            raise ValueError(f"that photo is {picture.width}×{picture.height} pixels; the largest I take is "
                             f"{MAX_PIXELS // 1_000_000} megapixels")
        marks = detect_face(picture, self.face_models)
        return from_pil(align_face(picture, marks, self.resolution), self.resolution)

    def _cached(self, key: int) -> Inversion | None:
        """A photo's inversion if cached, or once made when another session is inverting it now; else None."""
        with self.cache_lock:
            inversion, pending = self.photos.get(key), self.inverting.get(key)
        if inversion is None and pending is not None:
            return pending.result()
        return inversion

    def _inversion(self, key: int) -> Inversion:
        """The inversion for a photo key: cached, or redone from the photo saved in ``photo_dir``."""
        cached = self._cached(key)
        if cached is not None:
            return cached
        saved = self.photo_dir / f"{key:012x}.png" if self.photo_dir else None
        if saved is None or not saved.is_file():
            raise BackendError("that photo is no longer loaded (the server restarted or dropped it); "
                               "please upload it again")
        with Image.open(saved) as picture:
            photo = torch.from_numpy(np.asarray(picture.convert("RGB")).copy()).permute(2, 0, 1)
        return self._invert(photo)

    def _invert(self, photo: torch.Tensor) -> Inversion:
        """Inverts a (3, R, R) uint8 photo once; later calls with the same pixels hit the cache, and
        calls while another thread inverts it wait for that inversion (and share its errors)."""
        key = photo_key(photo)
        with self.cache_lock:  # check and claim in one step: two threads never both invert a photo
            cached, pending = self.photos.get(key), self.inverting.get(key)
            mine = cached is None and pending is None
            if mine:
                pending = self.inverting[key] = Future()
        if cached is not None:
            return cached
        if not mine:
            return pending.result()
        try:
            inversion = self._invert_now(key, photo)
        except BaseException as error:
            pending.set_exception(error)
            raise
        finally:
            with self.cache_lock:
                del self.inverting[key]
        pending.set_result(inversion)
        return inversion

    def _invert_now(self, key: int, photo: torch.Tensor) -> Inversion:
        """The LEDITS++ inversion of a photo, cached; only ``_invert``, which claimed ``key``, calls this."""
        picture = Image.fromarray(photo.permute(1, 2, 0).numpy(), "RGB")
        smaller = self.resolution * 3 // 4 // 32 * 32  # latents stay a multiple of 4 for LEDITS++'s masks
        sizes = dict.fromkeys(s for s in (self.resolution, smaller) if s >= 32)  # out of GPU memory: once smaller
        identity = self._identity_embedding(picture)
        with self.lock:
            # invert the photo, not an adapted one; with FaceID, under the photo's identity as every pass will be
            self._set_adapter_weights(torch.zeros(len(self.attributes)), identity=identity is not None)
            for size in sizes:
                try:
                    with self._ledits_pass(), self._face_prompt(identity):
                        out = self.pipe.invert(image=picture.resize((size, size), Image.LANCZOS),
                                               num_inversion_steps=self.inversion_steps, skip=self.skip,
                                               generator=torch.Generator().manual_seed(self.seed),
                                               source_prompt=self.texts.get("source_prompt", ""))
                    inversion = Inversion.take(self.pipe, photo, identity)
                    # the unedited picture is the VAE's own reconstruction, which a pass with no edit redraws
                    # (LEDITS++'s inversion is exact up to the VAE): drawn by the inversion, no second pass
                    inversion.reconstruction = self._full_size(
                        from_pil(out.vae_reconstruction_images[0], size).float().clamp(0, 1))
                    break
                except torch.cuda.OutOfMemoryError:
                    logger.warning("out of GPU memory inverting at %d px", size)
                    torch.cuda.empty_cache()
            else:
                raise BackendError(OUT_OF_MEMORY)
            with self.cache_lock:  # under the pipeline lock too: ``load_ip_adapter`` cannot clear in between
                self.photos[key] = inversion
        if self.photo_dir is not None:
            self.photo_dir.mkdir(parents=True, exist_ok=True)
            picture.save(self.photo_dir / f"{key:012x}.png")
        return inversion

    def _identity_embedding(self, picture: Image.Image) -> torch.Tensor | None:
        """The photo's insightface ArcFace embedding (D,) for FaceID; None without an active adapter."""
        if self.faceid is None or not self.faceid.active:
            return None
        return torch.from_numpy(face_embedding(self.insightface, picture)).float()

    @contextmanager
    def _ledits_pass(self):
        """A LEDITS++ inversion or pass inside the block (call under the lock). LEDITS++ swaps the UNet's
        attention processors for its own (plain attention that records maps into the pipeline's store)
        and leaves them there; the text-to-image pipeline that draws new faces shares the UNet, and would
        run slower and keep recording maps, so the UNet's own processors go back afterwards."""
        try:
            yield
        finally:
            self.pipe.unet.set_attn_processor(dict(self.unet_processors))  # it pops from the dict it is given

    def _face_prompt(self, identity: torch.Tensor | None):
        """FaceID's image prompt for the UNet calls inside the block (call under the lock); nothing without one."""
        return nullcontext() if identity is None else self.faceid.applied(self.pipe.unet, identity)

    @staticmethod
    def _latent(key: int, strengths: torch.Tensor) -> torch.Tensor:
        return torch.cat([strengths.float().cpu(), torch.tensor(split_key(key))])[None]

    @staticmethod
    def _split(latent: torch.Tensor) -> tuple[int, torch.Tensor]:
        return join_key(*latent[-2:].tolist()), latent[:-2].float().cpu()

    # ----------------------------------------------------------------- faces

    def sample(self, seed: int) -> torch.Tensor:
        """A new face: a portrait drawn by the checkpoint from ``prompts/diffusion.yaml``, then inverted."""
        new = self.texts["new_face"]
        with self.lock:
            # a face drawn from text has no photo yet, so no FaceID here (no image prompt, its LoRA off); once
            # drawn it is inverted and edited as a photo is, with its own identity
            self._set_adapter_weights(torch.zeros(len(self.attributes)))
            text2image = self._text2image()
            image = self._run_out_of_memory_safe(lambda: text2image(
                prompt=new["prompt"], negative_prompt=new["negative"], num_inference_steps=self.new_face_steps,
                guidance_scale=float(new["guidance"]), height=self.resolution, width=self.resolution,
                generator=torch.Generator().manual_seed(seed), output_type="pt").images[0])
        return self.encode(image[None])

    def _text2image(self):
        """A text-to-image pipeline over the loaded components (no copy), built on first use."""
        if self.text2image is None:
            from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

            xl = hasattr(self.pipe, "text_encoder_2")
            # at the pipeline's own dtype: ``from_pipe`` otherwise casts the shared components to float32
            self.text2image = (StableDiffusionXLPipeline if xl else StableDiffusionPipeline).from_pipe(
                self.pipe, dtype=self.pipe.dtype)
            self.text2image.set_progress_bar_config(disable=True)
        return self.text2image

    def encode(self, image: torch.Tensor, refine_steps: int | None = None,
               on_progress: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Inverts photos (B, 3, R, R) in [0, 1]; their latents have every strength at zero."""
        latents = []
        for photo in image:
            photo = (photo.detach().float().cpu().clamp(0, 1) * 255).round().byte()
            inversion = self._invert(photo)
            if on_progress is not None:
                on_progress(self.inversion_steps, inversion.reconstruction)
            latents.append(self._latent(photo_key(photo), torch.zeros(len(self.attributes))))
        return torch.cat(latents)

    def generate(self, latent: torch.Tensor, on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """(B, 3, R, R) in [0, 1]: each latent's photo redrawn with its strengths."""
        images = []
        for row in latent.detach().float().cpu():
            with self.cache_lock:
                drawn = self.drawn.get(row.numpy().tobytes())
            if drawn is None:
                key, strengths = self._split(row)
                inversion = self._inversion(key)
                if bool(strengths.abs().gt(1e-4).any()) or inversion.reconstruction is None:
                    with self.lock:
                        drawn = self._redraw(inversion, strengths, on_preview)
                else:
                    drawn = inversion.reconstruction
                with self.cache_lock:
                    self.drawn[row.numpy().tobytes()] = drawn
            images.append(drawn)
        return torch.stack(images).to(self.device)

    def _redraw(self, inversion: Inversion, strengths: torch.Tensor,
                on_preview: Callable[[torch.Tensor], None] | None) -> torch.Tensor:
        """One LEDITS++ pass from ``inversion`` with a concept per non-zero strength (call under the lock)."""
        concepts = [(a, float(s)) for a, s in zip(self.attributes, strengths.tolist())
                    if abs(s) > 1e-4 and a not in self.adapters]
        spec = self.texts["attributes"]
        inversion.put(self.pipe)
        self._set_adapter_weights(strengths, identity=inversion.identity is not None)
        total = len(inversion.timesteps)

        def preview(pipe, i, t, tensors):
            if on_preview is not None and (i + 1) % self.preview_every == 0 and i + 1 < total:
                on_preview(self._decode(tensors["latents"])[0])
            return {}

        kwargs = dict(editing_prompt=None) if not concepts else dict(
            editing_prompt=[spec[a]["concept"] for a, _ in concepts],
            reverse_editing_direction=[s < 0 for _, s in concepts],
            edit_guidance_scale=[abs(s) * float(spec[a]["guidance"]) for a, s in concepts],
            edit_threshold=[float(spec[a]["threshold"]) for a, _ in concepts])
        with self._ledits_pass(), self._face_prompt(inversion.identity):  # every row of every step: see faceid.py
            out = self._run_out_of_memory_safe(lambda: self.pipe(
                output_type="pt", callback_on_step_end=preview, callback_on_step_end_tensor_inputs=["latents"],
                generator=torch.Generator().manual_seed(self.seed), **kwargs))
        if out.nsfw_content_detected and any(out.nsfw_content_detected):
            raise BackendError("the checkpoint's safety checker blocked this result; nothing was changed")
        return self._full_size(out.images[0].float().clamp(0, 1).cpu())

    def _full_size(self, image: torch.Tensor) -> torch.Tensor:
        """Images from a photo inverted smaller (out of memory) are shown at the backend's resolution."""
        if image.shape[-1] == self.resolution:
            return image
        return F.interpolate(image[None], size=(self.resolution, self.resolution), mode="bicubic",
                             align_corners=False).clamp(0, 1)[0]

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.preview_vae or self.pipe.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return self._full_size(((image.float() + 1) / 2).clamp(0, 1).cpu()[0])[None]

    def _run_out_of_memory_safe(self, call):
        try:
            return call()
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            raise BackendError(OUT_OF_MEMORY) from error

    # ----------------------------------------------------------------- what the walk needs

    def predict(self, image: torch.Tensor) -> PredictorReading:
        return self.reader.read(image)

    def step(self, method: str, attribute: int, latent: torch.Tensor, direction: int = 1) -> torch.Tensor:
        """One degree of strength for ``attribute``, up (``direction`` 1) or down (-1); the photo key never moves."""
        if method != "field":
            raise ValueError(f"the diffusion backend edits by strength along its concepts (method 'field'), "
                             f"it has no {method!r} baseline")
        change = torch.zeros_like(latent)
        change[:, attribute] = 1.0 if direction > 0 else -1.0
        return change

    def latent_distance(self, latent: torch.Tensor) -> torch.Tensor:
        """How hard the photo is pushed, in units of five degrees of strength."""
        return latent[:, :-2].norm(dim=-1).max() / 5
