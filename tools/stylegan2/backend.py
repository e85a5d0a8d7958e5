"""The StyleGAN2 backend: Talk-to-Edit's published models behind the walk's interface.

``--backend stylegan2 --weights DIR`` reads Talk-to-Edit's ``pretrained_models`` folder as it is
published (see ``FILES``) and offers what ``tools.walk`` and ``chatedit.editor`` need: ``intake``,
``sample``, ``encode``, ``generate``, ``predict``, ``identity``, ``step`` and ``latent_distance``.

A photo comes in FFHQ-aligned (``tools.align``): the face found, rotated upright and cropped from
its eyes and mouth. Identity is insightface's ArcFace when ``face_models`` holds insightface's
recognition model, else the published ArcFace ResNet-18.

The latent of a face is its W+ code (1, n_latent, 512). A photo is inverted to a single W code
by default (``inversion="w"``: every W+ row the same), the kind of code Talk-to-Edit's fields were
trained on and edit; ``inversion="wplus"`` frees the rows to differ, which draws the photo closer
but hands the fields a code unlike any they saw. A new face is mapped from z with no truncation
(``truncation`` 1.0, as Talk-to-Edit samples) unless asked.

A field step is Talk-to-Edit's: the field reads the W code (the first W+ row, which every step
moves with the edited rows), its output goes through the generator's mapping MLP, and the
difference is added to the first ``replaced_layers`` rows only, so coarse structure and expression
change while the later rows, which carry colour and texture, are kept. One walk "degree" is
``field_steps_per_degree`` of these unit steps, each re-evaluating the field where the last one
ended, as Talk-to-Edit's editing loop does. The walk takes a degree in ``capabilities.substeps``
substeps (8; so the steps per degree are a multiple of 8) and re-reads the predictor after each,
so ``step`` returns one substep's unit steps, walked, times the substeps per degree:
the walk's ordinary stride (a ``1 / substeps`` share of it) is exactly those unit steps. Its
other strides (halved near the target, doubled on flat stretches, whole-degree jumps) scale that
substep, as the walk scales any backend's step.

On a CUDA device drawing runs in half precision (``half``, auto: on for CUDA, off for a CPU):
``generate`` synthesises under float16 autocast; the inversion, the mapping, the fields, the
predictor and ArcFace stay float32 (``_drawing`` says why).

Pivotal Tuning (``pti_steps``; auto: ``DEFAULT_PTI_STEPS`` on CUDA, off on a CPU): after an
upload's inversion, the synthesis weights are fine-tuned on that photo alone at its code (the
pivot; ``pivotal.py``), so the photo is drawn more closely and edits start from it. A tuned
generator belongs to one photo while sessions share the backend, so with the option on a latent
carries one more row, (1, n_latent + 1, 512): its first two entries hold the 48-bit key of the
photo's tune in two float32 halves (both 0: the untuned generator, as for every sampled face). A
step never moves that row and the distance ignores it, so the walk, undo, the SQLite store and the
GIF (which interpolates within one face) carry it unchanged. ``generate`` draws each key's rows
with that key's tuned weights: the last ``pti_cache`` tunes are kept (only the tensors that moved),
and one dropped, or lost in a restart, is redone from ``photo_dir`` (each tune's photo and pivot
are written there) or else refused with a sentence asking for the photo again. The inversion's
progress frames go on through the tune, numbered after the inversion's steps. Without the option
latents are (1, n_latent, 512) as before; both shapes are drawn whichever way the backend is set.

Verified only with random weights (no published file can be downloaded here): shapes, loading,
determinism, and that a walk, an inversion, Pivotal Tuning and identity run end to end. How many of
Talk-to-Edit's steps make one degree, the inversion's step count and learning rate, and the tune's
step count (``DEFAULT_PTI_STEPS``, unmeasured) and learning rate are starting values to tune on the
real models.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from chatedit.attributes import attribute_names
from chatedit.images import from_pil, to_pil

from ..align import align_face, detect_face, face_embedding, insightface_app
from ..keys import join_key, split_key
from ..backend import Backend, BackendError, Capabilities, PredictorReading
from . import talk_to_edit as tte
from .generator import Generator, load_generator, to_image01
from .pivotal import Recipe, tune

logger = logging.getLogger(__name__)

# Talk-to-Edit's pretrained_models folder, by generator resolution
FILES = {
    128: {"generator": "stylegan2_128.pt", "predictor": "predictor_128.pth.tar", "fields": "128_field",
          "arcface": "arcface_resnet18_110.pth", "eval_predictor": "eval_predictor.pth.tar"},
    1024: {"generator": "stylegan2_1024.pth", "predictor": "predictor_1024.pth.tar", "fields": "1024_field",
           "arcface": "arcface_resnet18_110.pth", "eval_predictor": "eval_predictor.pth.tar"},
}
DEFAULT_PTI_STEPS = 100  # Pivotal Tuning steps on a CUDA device when not given; unmeasured, a starting value
INVERSIONS = ("w", "wplus")  # a photo's code: one W code on every row, or W+ rows free to differ


def missing_files(weights_dir: str | Path, resolution: int = 128) -> list[str]:
    """The published files ``load`` needs that are not in ``weights_dir``."""
    if resolution not in FILES:
        raise ValueError(f"Talk-to-Edit publishes 128 and 1024 px models, not {resolution}")
    root, names = Path(weights_dir), FILES[resolution]
    needed = [root / names["generator"], root / names["predictor"], root / names["arcface"]]
    needed += [root / names["fields"] / tte.attribute(a).field_file for a in attribute_names()]
    return [str(p) for p in needed if not p.is_file()]


class StyleGAN2Backend(Backend):
    name = "stylegan2"
    # real photos: no fit threshold until one is measured on the real models; 200 inversion steps
    capabilities = Capabilities(refine_steps=200, photos=True)

    def __init__(self, generator: Generator, fields: list[tte.FieldNetwork], predictor: tte.AttributePredictor,
                 arcface: tte.ArcFaceResNet18, replaced_layers: int | None = None, truncation: float = 1.0,
                 field_steps_per_degree: int = 8, inversion: str = "w", inversion_lr: float = 0.05,
                 face_models: str | Path | None = None, half: bool | None = None, pti_steps: int | None = None,
                 pti_lr: float = 3e-4, pti_cache: int = 4, photo_dir: str | Path | None = None):
        if inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {', '.join(INVERSIONS)}, got {inversion!r}")
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be above 0 and at most 1 (1: none), got {truncation}")
        substeps = self.capabilities.substeps  # the walk's steps per degree, each a whole number of unit steps
        if isinstance(field_steps_per_degree, bool) or not isinstance(field_steps_per_degree, int) \
                or field_steps_per_degree < substeps or field_steps_per_degree % substeps:
            raise ValueError(f"field_steps_per_degree must be a multiple of the walk's {substeps} substeps per "
                             f"degree ({substeps}, {2 * substeps}, ...), got {field_steps_per_degree!r}")
        self.generator = generator
        self.device = generator.device
        self.half = resolve_half(half, self.device)  # draw under float16 autocast (``generate``)
        self.pti_steps = resolve_pti_steps(pti_steps, self.device)  # Pivotal Tuning per upload; 0: off
        if pti_lr <= 0 or pti_cache < 1:
            raise ValueError(f"pti_lr must be positive and pti_cache at least 1, got {pti_lr} and {pti_cache}")
        self.pti_lr, self.pti_cache = pti_lr, pti_cache
        self.photo_dir = Path(photo_dir) if photo_dir else None  # tunes' recipes, to redo them after a restart
        self.tuned: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()  # key -> tuned synthesis tensors
        self.lock = threading.Lock()  # guards ``tuned`` and the drawing copy that takes tuned weights
        self._tuned_drawer: Generator | None = None  # made on the first tuned draw; the shared generator never changes
        self.resolution = generator.size
        self.attributes = attribute_names()
        self.fields = [f.to(self.device) for f in fields]  # in our attribute order
        self.predictor = predictor.to(self.device)
        self.arcface = arcface.to(self.device)
        self.style_mlp = generator.style[1:]  # the mapping without its leading PixelNorm, as the fields expect
        self.replaced_layers = replaced_layers or tte.REPLACED_LAYERS.get(generator.size, generator.n_latent * 2 // 3)
        self.truncation = truncation
        self.inversion, self.inversion_lr = inversion, inversion_lr
        # a degree is field_steps_per_degree unit steps, walked in substeps of whole unit steps
        self.field_steps_per_degree = field_steps_per_degree
        self.unit_steps_per_substep = field_steps_per_degree // substeps
        self.eval_predictor: tte.AttributePredictor | None = None  # Talk-to-Edit's, for benchmarks only
        self.face_models = face_models  # insightface's ONNX files: its detector finds faces, its ArcFace compares them
        faces = insightface_app(face_models)
        recognition = faces.models.get("recognition") if faces is not None else None
        self.insightface = faces if recognition is not None else None  # kept for identity only with its ArcFace
        self.identity_model = (f"insightface ArcFace ({Path(getattr(recognition, 'model_file', 'recognition')).name})"
                               if recognition is not None else "Talk-to-Edit's ArcFace ResNet-18")
        # where W codes live: mean and spread of mapped samples (the walk's distance limit)
        with torch.no_grad():
            z = torch.randn(4096, generator.style_dim, generator=torch.Generator().manual_seed(0)).to(self.device)
            w = generator.mapping(z)
        self.w_mean = generator.mean_latent() if generator.latent_avg is not None else w.mean(0, keepdim=True)
        self.w_std = w.std(0, keepdim=True).clamp(min=1e-6)

    @classmethod
    def load(cls, weights_dir: str | Path, resolution: int = 128, device: str | None = None,
             field_config: dict | None = None, predictor_config: dict | None = None,
             arcface_config: dict | None = None, face_models: str | Path | None = None,
             **options) -> "StyleGAN2Backend":
        """Loads Talk-to-Edit's published files from ``weights_dir`` (names in ``FILES``), and
        insightface's from ``face_models`` when given and the package is installed."""
        missing = missing_files(weights_dir, resolution)
        if missing:
            raise FileNotFoundError("the StyleGAN2 backend needs Talk-to-Edit's published files; missing: "
                                    + ", ".join(missing))
        root, names = Path(weights_dir), FILES[resolution]
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        generator = load_generator(root / names["generator"], device=device)
        fields = [tte.load_field(root / names["fields"] / tte.attribute(a).field_file, device,
                                 **(field_config or {})) for a in attribute_names()]
        predictor = tte.load_predictor(root / names["predictor"], device, **(predictor_config or {}))
        arcface = tte.load_arcface(root / names["arcface"], device, **(arcface_config or {}))
        backend = cls(generator, fields, predictor, arcface, face_models=face_models, **options)
        grader = root / names["eval_predictor"]  # optional: only the benchmark grades with it
        if grader.is_file():
            backend.eval_predictor = tte.load_predictor(grader, device, **(predictor_config or {}))
        return backend

    @classmethod
    def from_options(cls, options) -> "StyleGAN2Backend":
        """The backend from its registry options (``plugin.StyleGAN2Options``)."""
        return cls.load(options.weights, resolution=options.resolution, device=options.device,
                        face_models=options.face_models, half=options.half, pti_steps=options.pti_steps,
                        pti_cache=options.pti_cache, photo_dir=options.photo_dir, inversion=options.inversion,
                        truncation=options.truncation, field_steps_per_degree=options.field_steps)

    # ----------------------------------------------------------------- faces

    def intake(self, picture: Image.Image) -> torch.Tensor:
        """A photo as the (3, R, R) face to invert: found, rotated upright and cropped the FFHQ way.

        Raises ``NoFaceFound`` (a ValueError with a plain sentence) when the photo shows no face.
        """
        marks = detect_face(picture, self.face_models)
        return from_pil(align_face(picture, marks, self.resolution), self.resolution)

    @torch.no_grad()
    def sample(self, seed: int) -> torch.Tensor:
        """A new face for ``seed`` as W+ (1, n_latent, C), every row its W code (pulled towards the mean
        face when ``truncation`` is below 1); with Pivotal Tuning on, one more row that names the
        untuned generator (all zeros)."""
        z = torch.randn(1, self.generator.style_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        w = self.generator.mapping(z)
        if self.truncation < 1:
            w = torch.lerp(self.w_mean, w, self.truncation)
        w_plus = self.generator.to_w_plus(w)
        return self._with_key(w_plus, 0) if self.pti_steps else w_plus

    @torch.no_grad()
    def generate(self, w_plus: torch.Tensor, on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """Images (B, 3, R, R) in [0, 1], float32 even when drawn in half precision (``half``); the rows
        of a tuned photo's key with that photo's tuned weights."""
        codes, keys = self._split(w_plus.to(self.device))
        out = torch.empty(codes.shape[0], 3, self.resolution, self.resolution, device=self.device)
        for key in dict.fromkeys(keys):  # each key once, in order of appearance
            rows = [i for i, k in enumerate(keys) if k == key]
            if key == 0:
                with self._drawing():
                    out[rows] = self.generator.synthesis(codes[rows]).float()
                continue
            weights = self._tuned_weights(key)
            with self.lock, self._drawing():
                if self._tuned_drawer is None:
                    self._tuned_drawer = copy.deepcopy(self.generator)
                out[rows] = torch.func.functional_call(self._tuned_drawer, weights, (codes[rows],)).float()
        return to_image01(out).clamp(0, 1)

    def _drawing(self):
        """Half precision for drawing only: ``generate`` (new faces, the walk's frames, the GIF)
        is most of an edit's time and its images are shown in 8 bits, far coarser than float16's
        error. Everything that optimises or measures stays float32: the inversion (its gradients
        and small updates), the mapping and the fields (a step's small change to W+), and the
        predictor and ArcFace, which read ``generate``'s float32 output outside autocast, so the
        walk's degree and identity readings keep their precision."""
        return torch.autocast("cuda", dtype=torch.float16) if self.half else contextlib.nullcontext()

    def encode(self, image: torch.Tensor, refine_steps: int = 200,
               on_progress: Callable[[int, torch.Tensor], None] | None = None,
               inversion: str | None = None) -> torch.Tensor:
        """Inverts images (B, 3, R, R) in [0, 1] by optimisation from the mean face, then, with
        ``pti_steps``, tunes the synthesis weights on each photo at its code (see the module doc).

        ``inversion`` (default: the backend's) is "w", one W code per image drawn on every W+ row,
        or "wplus", every row free. Pixel error plus a light pull of the code towards the W
        distribution, so it stays editable. ``on_progress(step, image)`` sees the first image's
        reconstruction (3, R, R) every tenth step, drawn before that step's update (so never the
        final code's image); the tune's steps are numbered on from ``refine_steps``. Returns W+
        (B, n_latent, C), or with Pivotal Tuning (B, n_latent + 1, C) whose last row names each
        photo's tune.
        """
        inversion = self.inversion if inversion is None else inversion
        if inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {', '.join(INVERSIONS)}, got {inversion!r}")
        size = self.resolution
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, size, size):
            raise ValueError(f"images must be (B, 3, {size}, {size}), got {tuple(image.shape)}")
        target = image.to(self.device) * 2 - 1
        # float32 throughout, even with ``half``: no autocast here (see ``_drawing``)
        start = self.w_mean.expand(image.shape[0], -1)  # (B, C)
        code = (start if inversion == "w" else self.generator.to_w_plus(start)).clone().requires_grad_(True)
        opt = torch.optim.Adam([code], lr=self.inversion_lr)
        for step in range(max(refine_steps, 0)):
            w_plus = self.generator.to_w_plus(code) if inversion == "w" else code  # (B, n_latent, C)
            out = self.generator.synthesis(w_plus)
            loss = F.mse_loss(out, target) + 1e-4 * self._spread(w_plus)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if on_progress is not None and step % 10 == 0:
                on_progress(step, to_image01(out[0].detach()).clamp(0, 1))
        code = code.detach()
        pivots = self.generator.to_w_plus(code) if inversion == "w" else code
        if not self.pti_steps:
            return pivots
        latents = []
        for b, pivot in enumerate(pivots):
            photo = (image[b].detach().float().cpu().clamp(0, 1) * 255).round().byte()  # the 8-bit photo, as saved
            recipe = Recipe(photo, pivot[None].cpu(), self.pti_steps, self.pti_lr)
            self._tune(recipe, on_progress if b == 0 else None, first_step=max(refine_steps, 0))
            latents.append(self._with_key(pivot[None], recipe.key))
        return torch.cat(latents)

    # ----------------------------------------------------------------- Pivotal Tuning

    def _tune(self, recipe: Recipe, on_progress: Callable[[int, torch.Tensor], None] | None = None,
              first_step: int = 0) -> dict[str, torch.Tensor]:
        """The tuned weights of ``recipe``: cached, or tuned now (outside the lock: other sessions keep
        drawing) and cached, its recipe written to ``photo_dir``."""
        key = recipe.key
        cached = self._cached_tune(key)
        if cached is not None:
            return cached
        weights = tune(self.generator, recipe, on_progress, first_step)
        if self.photo_dir is not None:
            recipe.save(self.photo_dir)
        with self.lock:
            self.tuned[key] = weights
            while len(self.tuned) > self.pti_cache:
                self.tuned.popitem(last=False)
        return weights

    def _tuned_weights(self, key: int) -> dict[str, torch.Tensor]:
        """A key's tuned weights: cached, or tuned again from the recipe saved in ``photo_dir``."""
        cached = self._cached_tune(key)
        if cached is not None:
            return cached
        recipe = Recipe.load(self.photo_dir, key) if self.photo_dir is not None else None
        if recipe is None:
            raise BackendError("that photo's fitted generator is no longer loaded (the server restarted or "
                               "dropped it); please upload the photo again")
        logger.info("tuning the generator again for photo %012x from %s", key, self.photo_dir)
        return self._tune(recipe)

    def _cached_tune(self, key: int) -> dict[str, torch.Tensor] | None:
        with self.lock:
            weights = self.tuned.get(key)
            if weights is not None:
                self.tuned.move_to_end(key)
            return weights

    def _with_key(self, w_plus: torch.Tensor, key: int) -> torch.Tensor:
        """W+ (B, n_latent, C) and a last row naming a tune's key (0: the untuned generator)."""
        row = torch.zeros(w_plus.shape[0], 1, w_plus.shape[2], device=w_plus.device)
        row[:, 0, :2] = torch.tensor(split_key(key))
        return torch.cat([w_plus, row], dim=1)

    def _split(self, latent: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """A latent (B, n_latent [+ 1], C) as W+ (B, n_latent, C) and each row's tune key (0: untuned)."""
        n, c = self.generator.n_latent, self.generator.style_dim
        if latent.ndim != 3 or latent.shape[1] not in (n, n + 1) or latent.shape[2] != c:
            raise ValueError(f"a latent must be W+ (B, {n}, {c}), or (B, {n + 1}, {c}) with a tune's key, "
                             f"got {tuple(latent.shape)}")
        if latent.shape[1] == n:
            return latent, [0] * latent.shape[0]
        return latent[:, :n], [join_key(high, low) for high, low in latent[:, n, :2].tolist()]

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> PredictorReading:
        return PredictorReading.from_logits(tte.our_logits(self.predictor(tte.predictor_input(image.to(self.device)))))

    @torch.no_grad()
    def eval_read(self, image: torch.Tensor) -> torch.Tensor:
        """(B, A) degrees by the evaluation predictor, which never steers an edit, read from the 8-bit
        image as Talk-to-Edit's evaluation reads its saved PNGs."""
        if self.eval_predictor is None:
            raise FileNotFoundError("grading edits needs Talk-to-Edit's eval_predictor.pth.tar beside the other files")
        return tte.read_degrees(self.eval_predictor(tte.eval_predictor_input(image.to(self.device))))

    @torch.no_grad()
    def identity(self, image: torch.Tensor) -> torch.Tensor:
        """Unit-length ArcFace embeddings (B, 512) of images (B, 3, R, R): their dot product is the
        identity similarity. insightface's model when loaded (``identity_model`` says which)."""
        if self.insightface is None:
            return F.normalize(self.arcface(tte.arcface_input(image.to(self.device))), dim=-1)
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        vectors = [face_embedding(self.insightface, to_pil(one)) for one in image]
        return torch.from_numpy(np.stack(vectors)).float().to(self.device)

    # ----------------------------------------------------------------- what the walk needs

    @torch.no_grad()
    def step(self, method: str, attribute: int, w_plus: torch.Tensor, direction: int = 1) -> torch.Tensor:
        """The W+ change that moves ``attribute`` about one degree up (``direction`` 1) or down (-1) at
        ``w_plus``: one substep of Talk-to-Edit's unit field steps, each evaluating the field where
        the last one ended, times the substeps per degree (so the walk's ``1 / substeps`` stride is
        exactly those unit steps). Talk-to-Edit publishes one field per attribute, walked backwards
        (its steps subtracted, each re-evaluated there) to go down."""
        if method != "field":
            raise ValueError("the StyleGAN2 backend walks Talk-to-Edit's fields only (method 'field'); "
                             "no linear baseline is published for it")
        codes, _ = self._split(w_plus)  # (B, n_latent, C)
        alpha = 1.0 if direction > 0 else -1.0
        w, moved = codes[:, 0], codes  # the field reads the W code, the first row
        for _ in range(self.unit_steps_per_substep):
            w, moved = tte.field_step(self.fields[attribute], self.style_mlp, w, moved, self.replaced_layers, alpha)
        change = (moved - codes) * self.capabilities.substeps
        return F.pad(change, (0, 0, 0, w_plus.shape[1] - codes.shape[1]))  # a tune's key never moves

    @torch.no_grad()
    def latent_distance(self, w_plus: torch.Tensor) -> torch.Tensor:
        """How far a code is from where mapped codes live, in their spread (about 1 for sampled faces)."""
        return self._spread(self._split(w_plus)[0]).sqrt()

    def _spread(self, w_plus: torch.Tensor) -> torch.Tensor:
        """Mean squared distance of W+ rows from the mapped codes' mean, in units of their spread."""
        return (((w_plus - self.w_mean[:, None]) / self.w_std[:, None]) ** 2).mean()


def resolve_half(half: bool | None, device: torch.device | str) -> bool:
    """The ``half`` option: None (auto) is on for a CUDA device and off elsewhere; True on a
    device that is not CUDA is refused (float16 autocast is what makes a GPU faster; a CPU runs
    it slower, and the backend never changes a request silently)."""
    cuda = torch.device(device).type == "cuda"
    if half is None:
        return cuda
    if half and not cuda:
        raise ValueError(f"half precision draws on a CUDA device only, but this backend runs on {device}; "
                         "leave `half` unset (auto) or pass False")
    return bool(half)


def resolve_pti_steps(steps: int | None, device: torch.device | str) -> int:
    """The ``pti_steps`` option: None (auto) is ``DEFAULT_PTI_STEPS`` on a CUDA device and 0 (off)
    elsewhere, where a tune of a full-size generator takes minutes."""
    if steps is None:
        return DEFAULT_PTI_STEPS if torch.device(device).type == "cuda" else 0
    if steps < 0:
        raise ValueError(f"pti_steps must be 0 (off) or a positive number of steps, got {steps}")
    return int(steps)
