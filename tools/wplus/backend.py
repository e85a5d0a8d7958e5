"""The W+ adapter backend: walk a face in StyleGAN's W+ with the semantic fields, draw it with Stable Diffusion.

After "When StyleGAN Meets Stable Diffusion: a W+ Adapter for Personalized Image Generation" (Li et
al., CVPR 2024). A face is a StyleGAN2 W+ code and a scene. An upload, aligned the FFHQ way, is
inverted by e4e; a new face is mapped from z by the StyleGAN2 mapping network (Talk-to-Edit's
``stylegan2_1024.pth`` when ``--weights`` holds it, else the generator saved in the e4e file). The
picture is Stable Diffusion 1.5 drawing the scene's prompt with the W+ adapter's extra
cross-attention tokens (``adapter.py``) at ``scale``, the first ``start_fraction`` of the steps
without them and FreeU on, as the published demo does; the same latent always draws the same
picture (one noise seed for every pass).

Edits move the W+ code. A field step is Talk-to-Edit's 1024 px field step (as in the StyleGAN2
backend: the field reads row 0, its output goes through the mapping MLP, the change lands on the
first ``replaced_layers`` rows); a linear step adds an InterFaceGAN direction (``--directions``).
The walk re-reads degrees after every step. With Talk-to-Edit's predictor (``predictor_1024.pth.tar``
in ``--weights``) they are read on the StyleGAN2 rendering of the code, which is what the fields
were trained with and cheap; ``predict`` gets the SD picture, so ``generate`` remembers which code
each picture it drew came from (by the picture's bytes) and ``predict`` reads that code's
rendering. Without the predictor, or for a picture this backend did not draw, the CLIP or real
readers read the SD picture itself. Identity is the photo backends' real model: insightface's
ArcFace with ``--face-models``, else dlib's.

Latents are (1, n_latent + scene rows, style_dim): the W+ rows, then the scene (``scene.py``).
Every walk step is a whole SD pass, so a degree is two steps (``substeps``) and each shows the
picture forming (previews decoded from the pass's own latents). Verified only with random weights.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from cachetools import LRUCache
from PIL import Image

from chatedit.attributes import attribute_names
from chatedit.images import from_pil

from ..align import align_face, detect_face, insightface_app
from ..backend import Backend, BackendError, Capabilities, PredictorReading
from ..diffusion.reader import ClipDegreeReader
from ..diffusion.real import READERS, PhotoIdentity, RealDegreeReader
from ..stylegan2 import talk_to_edit as tte
from ..stylegan2.generator import Generator, load_generator, to_image01
from .adapter import WPlusAdapter
from .loading import E4E
from .plugin import DEFAULT_NEGATIVE, DEFAULT_PROMPT, GENERATOR
from .scene import check_scene, decode_scene, encode_scene, scene_rows

logger = logging.getLogger(__name__)

MAX_DRAWN = 256  # pictures kept by latent
FREEU = (0.6, 0.4, 1.1, 1.2)  # s1, s2, b1, b2: the published demo's FreeU settings
OUT_OF_MEMORY = "the GPU ran out of memory drawing this face; try again when fewer people are editing"


class WPlusBackend(PhotoIdentity, Backend):
    name = "wplus"
    # a walk step is an SD pass: two per degree, twelve per edit at most, each shown forming; e4e inverts
    # in one forward pass (no optimisation, nothing to stream); field walks and InterFaceGAN directions
    capabilities = Capabilities(substeps=2, max_steps=12, previews=True, streams_inversion=False, refine_steps=0,
                                gif_frames_per_step=1, photos=True, methods=("field", "linear"), scenes=True)

    def __init__(self, pipe, adapter: WPlusAdapter, e4e: E4E, fields: list[tte.FieldNetwork],
                 generator: Generator | None = None, predictor: tte.AttributePredictor | None = None,
                 clip_reader: ClipDegreeReader | None = None, degree_reader: str = "clip",
                 directions: dict[str, torch.Tensor] | None = None, prompt: str = DEFAULT_PROMPT,
                 negative_prompt: str = DEFAULT_NEGATIVE, scale: float = 1.0, steps: int = 30,
                 guidance: float = 7.5, start_fraction: float = 0.2, preview_every: int = 5, seed: int = 0,
                 field_steps_per_degree: int = 8, direction_per_degree: float = 1.0,
                 freeu: tuple[float, float, float, float] | None = FREEU, face_models: str | Path | None = None):
        # 1. check the settings
        substeps = self.capabilities.substeps
        if isinstance(field_steps_per_degree, bool) or not isinstance(field_steps_per_degree, int) \
                or field_steps_per_degree < substeps or field_steps_per_degree % substeps:
            raise ValueError(f"--field-steps must be a multiple of the walk's {substeps} steps per degree, got "
                             f"{field_steps_per_degree!r}")
        if not (np.isfinite(scale) and scale >= 0):
            raise ValueError(f"--wplus-scale has to be 0 or more but is {scale}")
        if steps < 1 or preview_every < 1 or not 0 <= start_fraction < 1:
            raise ValueError(f"steps and preview_every must be at least 1 and start_fraction in [0, 1), got "
                             f"{steps}, {preview_every} and {start_fraction}")
        if degree_reader not in READERS:
            raise ValueError(f"--reader must be one of {', '.join(READERS)}, got {degree_reader!r}")
        if predictor is None and clip_reader is None:
            raise ValueError("the W+ backend reads degrees with Talk-to-Edit's predictor_1024.pth.tar (in --weights) "
                             "or with a CLIP model (--clip); it was given neither")
        # 2. the StyleGAN2 side: codes, mapping, fields, predictor
        generator = generator if generator is not None else e4e.decoder
        if generator is None:
            raise ValueError("the W+ backend needs a StyleGAN2 generator for new faces and field steps: "
                             f"{GENERATOR} in --weights, or the 'decoder.' keys of the e4e file")
        self.n_latent, self.style_dim = e4e.encoder.rows, e4e.encoder.style_dim
        if (generator.n_latent, generator.style_dim) != (self.n_latent, self.style_dim):
            raise ValueError(f"the StyleGAN2 generator takes W+ ({generator.n_latent}, {generator.style_dim}) but e4e "
                             f"makes ({self.n_latent}, {self.style_dim})")
        if adapter.projection.n_rows != self.n_latent:
            raise ValueError(f"the W+ adapter reads {adapter.projection.n_rows} rows, e4e makes {self.n_latent}")
        self.attributes = attribute_names()
        if len(fields) != len(self.attributes):
            raise ValueError(f"one field per attribute ({', '.join(self.attributes)}), got {len(fields)}")
        for name, field in zip(self.attributes, fields):
            if field.config["latent_dim"] != self.style_dim:
                raise ValueError(f"the {name} field reads W codes of {field.config['latent_dim']}, the generator's "
                                 f"are {self.style_dim}")
        self.pipe, self.adapter, self.e4e = pipe, adapter, e4e
        if freeu is not None:  # the published demo draws with FreeU on; the UNet is this backend's own
            s1, s2, b1, b2 = freeu
            pipe.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
        self.device = pipe.device
        self.generator = generator.to(self.device)
        self.e4e.to(self.device)
        self.style_mlp = self.generator.style[1:]  # the mapping without its PixelNorm, as the fields expect
        self.fields = [f.to(self.device) for f in fields]
        self.replaced_layers = tte.REPLACED_LAYERS.get(generator.size, self.n_latent * 2 // 3)
        self.unit_steps_per_substep = field_steps_per_degree // substeps
        self.predictor = predictor.to(self.device) if predictor is not None else None
        self.directions = {self.attributes.index(a): d.to(self.device) for a, d in (directions or {}).items()}
        self.direction_per_degree = direction_per_degree
        with torch.no_grad():  # where W codes live: the walk's distance limit
            z = torch.randn(4096, self.style_dim, generator=torch.Generator().manual_seed(0)).to(self.device)
            w = self.generator.mapping(z)
        self.w_mean, self.w_std = w.mean(0, keepdim=True), w.std(0, keepdim=True).clamp(min=1e-6)
        # 3. the SD side: the scene, the pass, the readers and the identity model
        self.scene_rows = scene_rows(self.style_dim)
        self.prompt, self.negative_prompt = check_scene(prompt), negative_prompt
        self.scale, self.steps, self.guidance = scale, steps, guidance
        self.start_fraction, self.preview_every, self.seed = start_fraction, preview_every, seed
        self.resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
        self.clip_reader = clip_reader
        self.reader = (RealDegreeReader(clip_reader, self.attributes) if degree_reader == "real" and clip_reader
                       else clip_reader)
        self.degree_reader = "stylegan2" if predictor is not None else degree_reader
        self.face_models = face_models
        faces = insightface_app(face_models)
        self.insightface = faces if faces is not None and "recognition" in faces.models else None
        self.lock = threading.Lock()  # one pass at a time: the processors' scale is the pipeline's
        self.cache_lock = threading.Lock()
        self.drawn: LRUCache[bytes, torch.Tensor] = LRUCache(maxsize=MAX_DRAWN)  # latent bytes -> picture
        self.drawn_from: LRUCache[bytes, torch.Tensor] = LRUCache(maxsize=MAX_DRAWN)  # picture digest -> W+

    @classmethod
    def load(cls, wplus_adapter: str | Path, e4e: str | Path, weights: str | Path, model: str | None = None,
             prompt: str | None = None, scale: float | None = None, directions: str | Path | None = None,
             clip: str | None = None, reader: str | None = None, steps: int | None = None,
             device: str | None = None, **options) -> "WPlusBackend":
        """Every published file, each through its loader: SD 1.5 (``model``), e4e, the W+ adapter installed on
        the UNet, Talk-to-Edit's fields, predictor and generator from ``weights`` (their widths read from the
        files), InterFaceGAN ``directions``, and CLIP when the predictor is absent or ``clip`` is given.
        ``options`` go to the constructor."""
        from .loading import (field_config, load_directions, load_e4e, load_text2image, load_wplus_adapter,
                              predictor_config)
        from ..diffusion.plugin import DEFAULT_CLIP
        from .plugin import DEFAULT_MODEL, FIELDS, PREDICTOR

        root = Path(weights)
        field_files = [root / FIELDS / tte.attribute(a).field_file for a in attribute_names()]
        missing = [str(p) for p in field_files if not p.is_file()]
        if missing:
            raise FileNotFoundError("the W+ backend walks with Talk-to-Edit's 1024 px fields; missing: "
                                    + ", ".join(missing))
        # 1. Stable Diffusion, e4e, and the adapter on the UNet
        pipe = load_text2image(model or DEFAULT_MODEL, device)
        device = pipe.device
        encoder = load_e4e(e4e, device)
        rows, style = encoder.encoder.rows, encoder.encoder.style_dim
        adapter = load_wplus_adapter(wplus_adapter, pipe.unet, style, rows, 1.0 if scale is None else scale)
        # 2. Talk-to-Edit's files, rebuilt from their shapes
        fields = [tte.load_field(p, device, **field_config(tte.read_state_dict(p))) for p in field_files]
        predictor = generator = None
        if (root / PREDICTOR).is_file():
            config = predictor_config(tte.read_state_dict(root / PREDICTOR))
            predictor = tte.load_predictor(root / PREDICTOR, device, **config)
        if (root / GENERATOR).is_file():
            generator = load_generator(root / GENERATOR, device)
        # 3. the readers of the SD picture
        clip_reader = None
        if clip is not None or predictor is None or reader == "real":
            from ..diffusion.backend import load_texts
            from ..diffusion.reader import degree_prompts, load_clip

            clip_model, tokenizer = load_clip(clip or DEFAULT_CLIP, device)
            clip_reader = ClipDegreeReader(clip_model, tokenizer, degree_prompts(load_texts()), device)
        found = load_directions(directions, rows, style) if directions is not None else None
        given = {k: v for k, v in (("prompt", prompt), ("scale", scale), ("steps", steps)) if v is not None}
        return cls(pipe, adapter, encoder, fields, generator=generator, predictor=predictor, clip_reader=clip_reader,
                   degree_reader=reader or "clip", directions=found, **given, **options)

    @classmethod
    def from_options(cls, options) -> "WPlusBackend":
        """The backend from its registry options (``plugin.WPlusOptions``)."""
        from .plugin import load_backend

        return load_backend(options)

    # ----------------------------------------------------------------- latents

    def _split(self, latent: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """(B, n_latent + scene rows, C) → W+ (B, n_latent, C) and each row's prompt."""
        rows = self.n_latent + self.scene_rows
        if latent.ndim != 3 or tuple(latent.shape[1:]) != (rows, self.style_dim):
            raise ValueError(f"a latent of the W+ backend is (B, {rows}, {self.style_dim}): W+ and the scene, got "
                             f"{tuple(latent.shape)}")
        prompts = [decode_scene(row[self.n_latent:]) or self.prompt for row in latent.detach().cpu()]
        return latent[:, :self.n_latent], prompts

    def with_scene(self, latent: torch.Tensor, scene: str | None) -> torch.Tensor:
        """``latent`` with its scene replaced (None: the backend's own prompt); the face is untouched."""
        w_plus, _ = self._split(latent)
        rows = encode_scene(scene, self.scene_rows, self.style_dim).to(latent)
        return torch.cat([w_plus, rows.expand(latent.shape[0], -1, -1)], dim=1)

    def scene(self, latent: torch.Tensor) -> str:
        """The prompt the first row of ``latent`` is drawn with."""
        return self._split(latent[:1])[1][0]

    def _latent(self, w_plus: torch.Tensor) -> torch.Tensor:
        return self.with_scene(torch.cat([w_plus, w_plus.new_zeros(w_plus.shape[0], self.scene_rows,
                                                                   self.style_dim)], 1), None)

    # ----------------------------------------------------------------- faces in

    def intake(self, picture: Image.Image) -> torch.Tensor:
        """A photo as the (3, R, R) face e4e inverts: found, rotated upright and cropped the FFHQ way."""
        marks = detect_face(picture, self.face_models)
        return from_pil(align_face(picture, marks, self.resolution), self.resolution)

    @torch.no_grad()
    def sample(self, seed: int) -> torch.Tensor:
        """A new face for ``seed``: z mapped to W, on every W+ row; the backend's own scene."""
        z = torch.randn(1, self.style_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        return self._latent(self.generator.to_w_plus(self.generator.mapping(z)))

    @torch.no_grad()
    def encode(self, image: torch.Tensor, refine_steps: int = 0,
               on_progress: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Aligned faces (B, 3, R, R) in [0, 1] → latents by e4e (one forward pass; nothing to refine or stream)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        return self._latent(self.e4e.encode(image.to(self.device)))

    # ----------------------------------------------------------------- drawing

    def generate(self, latent: torch.Tensor, on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """(B, 3, R, R) in [0, 1]: each latent's face drawn by SD in its scene (cached by latent)."""
        w_plus, prompts = self._split(latent.detach().float())
        images = []
        for row, code, prompt in zip(latent.detach().float().cpu(), w_plus, prompts):
            key = row.numpy().tobytes()
            with self.cache_lock:
                drawn = self.drawn.get(key)
            if drawn is None:
                with self.lock:
                    drawn = self._draw(code[None], prompt, on_preview)
                with self.cache_lock:
                    self.drawn[key] = drawn
                    self.drawn_from[_digest(drawn)] = code.to(self.device)
            images.append(drawn)
        return torch.stack(images).to(self.device)

    @torch.no_grad()
    def _draw(self, w_plus: torch.Tensor, prompt: str, on_preview: Callable[[torch.Tensor], None] | None):
        """One SD pass of ``prompt`` with the W+ tokens of ``w_plus`` (1, n_latent, C) (call under the lock)."""
        # 1. the prompt's states followed by the W+ tokens; the unconditional row gets the zero code's
        pipe = self.pipe
        text, negative = pipe.encode_prompt(prompt, self.device, 1, True, self.negative_prompt)  # (1, 77, D) each
        tokens, zero_tokens = self.adapter.tokens(w_plus)  # (1, 4, D) each
        conditional = torch.cat([text, tokens.to(text.dtype)], dim=1)
        unconditional = torch.cat([negative, zero_tokens.to(negative.dtype)], dim=1)
        # 2. the W+ tokens join after the first steps (the layout is set by the prompt alone)
        start = round(self.steps * self.start_fraction)
        self.adapter.set_scale(self.scale if start == 0 else 0.0)

        def on_step_end(pipe, i, t, tensors):
            if i + 1 >= start:
                self.adapter.set_scale(self.scale)
            if on_preview is not None and (i + 1) % self.preview_every == 0 and i + 1 < self.steps:
                on_preview(self._decode(tensors["latents"]))
            return {}

        # 3. the pass, its noise from the backend's seed: the same code draws the same picture
        try:
            out = pipe(prompt_embeds=conditional, negative_prompt_embeds=unconditional, guidance_scale=self.guidance,
                       num_inference_steps=self.steps, height=self.resolution, width=self.resolution,
                       generator=torch.Generator().manual_seed(self.seed), output_type="pt",
                       callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=["latents"])
        except torch.cuda.OutOfMemoryError as error:
            torch.cuda.empty_cache()
            raise BackendError(OUT_OF_MEMORY) from error
        return out.images[0].float().clamp(0, 1).cpu()

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return ((image[0].float() + 1) / 2).clamp(0, 1).cpu()

    @torch.no_grad()
    def render(self, w_plus: torch.Tensor) -> torch.Tensor:
        """The StyleGAN2 rendering (B, 3, S, S) in [0, 1] of W+ codes (B, n_latent, C): what the fields edit."""
        return to_image01(self.generator.synthesis(w_plus.to(self.device).float()))

    # ----------------------------------------------------------------- reading faces

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> PredictorReading:
        """Degrees of pictures (B, 3, H, W): of the code a picture was drawn from, by Talk-to-Edit's predictor on
        its StyleGAN2 rendering, when this backend drew it and has the predictor; else by the readers."""
        readings = []
        for one in image:
            with self.cache_lock:
                code = self.drawn_from.get(_digest(one.detach().float().cpu()))
            if self.predictor is not None and (code is not None or self.reader is None):
                seen = self.render(code[None]) if code is not None else one[None].to(self.device).float()
                logits = tte.our_logits(self.predictor(tte.predictor_input(seen)))
                readings.append(PredictorReading.from_logits(logits))
            else:
                readings.append(self.reader.read(one[None]))
        return PredictorReading(*(torch.cat([getattr(r, k).to(self.device) for r in readings])
                                  for k in ("degrees", "expected", "probs")))

    # ----------------------------------------------------------------- what the walk needs

    @torch.no_grad()
    def step(self, method: str, attribute: int, latent: torch.Tensor, direction: int = 1) -> torch.Tensor:
        """The change that moves ``attribute`` one degree up (``direction`` 1) or down (-1): Talk-to-Edit's
        field steps (one substep's worth, times the substeps per degree, as in the StyleGAN2 backend) or
        an InterFaceGAN direction. The scene rows never move."""
        w_plus, _ = self._split(latent)
        sign = 1.0 if direction > 0 else -1.0
        if method == "field":
            w, moved = w_plus[:, 0], w_plus
            for _ in range(self.unit_steps_per_substep):
                w, moved = tte.field_step(self.fields[attribute], self.style_mlp, w, moved, self.replaced_layers, sign)
            change = (moved - w_plus) * self.capabilities.substeps
        elif method == "linear":
            if attribute not in self.directions:
                have = ", ".join(self.attributes[a] for a in sorted(self.directions)) or "none"
                name = self.attributes[attribute]
                raise ValueError(f"the W+ backend has no linear direction for {name} (directions loaded: {have}; "
                                 f"pass --directions DIR with {name}.pt)")
            change = (sign * self.direction_per_degree * self.directions[attribute]).expand_as(w_plus)
        else:
            raise ValueError(f"the W+ backend walks by 'field' or 'linear', not {method!r}")
        return F.pad(change, (0, 0, 0, self.scene_rows))

    @torch.no_grad()
    def latent_distance(self, latent: torch.Tensor) -> torch.Tensor:
        """How far the W+ rows are from where mapped codes live, in their spread (about 1 for sampled faces)."""
        w_plus, _ = self._split(latent)
        return (((w_plus.to(self.device) - self.w_mean[:, None]) / self.w_std[:, None]) ** 2).mean().sqrt()


def _digest(image: torch.Tensor) -> bytes:
    """A picture's key: its float32 bytes hashed, so a picture handed back to ``predict`` finds its code."""
    return hashlib.blake2b(image.detach().float().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
