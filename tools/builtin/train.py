"""Training the built-in backend from scratch on a CPU: ``chatedit train builtin``.

The recipe, in order:
1. render a training set: ``people`` identities, each in ``variants`` attribute combinations;
2. train the autoencoder E, G on it (pixels weighted towards mouths and eyes, and edges; a linear
   probe reads the five attribute values off the code), then record where encoded faces live
   (mean, covariance);
3. reconstruct the set through G(E(x)) so the steering models learn to read generated faces too;
4. train the attribute predictor P on renders and reconstructions;
5. train the evaluation predictor with another architecture, seed and blur/noise augmentation, so
   benchmarks never grade an edit with the model that steered it (it reads renders and
   reconstructions, as its job is grading generated faces);
6. train the identity encoder I with a supervised contrastive loss over variants of each person;
7. train a second, narrower steering predictor with another seed and blur/noise augmentation
   (walks read the mean of the two steering predictors; the fields train against P alone);
8. fit the linear baseline and the degree offsets, and train the semantic fields (``fields.py``).
Step counts are fixed (not timed), so a run is reproducible for its seed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import RenderSet, encode_all, render_set, to_uint8
from .fields import FieldConfig, train_all_fields
from .loading import (ATTRIBUTES_FILE, FIELD_FILE, LINEAR_FILE, MODEL_FILES, OFFSETS_FILE, check_trained_attributes,
                      load_model, save_model, write_trained_attributes)
from .models import AttributePredictor, Encoder, Generator, IdentityEncoder, LatentField
from .renderer import attribute_columns, landmarks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    people: int = 3000
    variants: int = 4
    w_dim: int = 64
    ae_steps: int = 2600
    ae_batch: int = 32
    ae_lr: float = 1e-3
    ae_probe_weight: float = 0.01  # the code's linear attribute probe (see ``train_autoencoder``)
    predictor_steps: int = 700
    second_predictor_steps: int = 1400  # the second steering predictor: a third of P's compute per image
    eval_predictor_steps: int = 1400  # the grader: a smaller network, trained longer (700: smiling 88% → 93%)
    identity_steps: int = 500
    field_steps: int = 120
    field_pairs: int = 1000
    field_fit_steps: int = 600
    batch: int = 64
    lr: float = 2e-3
    progress: bool = True

    @classmethod
    def quick(cls, **overrides) -> "TrainConfig":
        """A few minutes end to end: for smoke tests, not for shipping."""
        return replace(cls(people=64, variants=4, ae_steps=30, predictor_steps=20, second_predictor_steps=20,
                           eval_predictor_steps=20, identity_steps=15, field_steps=4, field_pairs=24,
                           field_fit_steps=12), **overrides)


def _bf16_ok() -> bool:
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def _schedule(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def _steps(name: str, steps: int, progress: bool):
    return tqdm(range(steps), desc=name, disable=not progress, mininterval=2.0)


def _optimise(params, step: int, steps: int, lr: float, opt: torch.optim.Optimizer, loss: torch.Tensor):
    for group in opt.param_groups:
        group["lr"] = _schedule(step, steps, lr)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


# --------------------------------------------------------------------------- 2. autoencoder


def _face_weight(size: int = 128) -> torch.Tensor:
    """(1, 1, H, W) pixel weights, mean 1: the face, where every attribute lives, counts 4× the corners."""
    coords = (torch.arange(size) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    w = 1 + 3 * torch.exp(-((x / 0.5) ** 2 + ((y - 0.15) / 0.6) ** 2))
    return (w / w.mean()).view(1, 1, size, size)


def feature_weight(marks: dict[str, torch.Tensor], size: int = 128) -> torch.Tensor:
    """(B, 1, H, W) extra pixel weights on each face's mouth and eyes, where the renderer put them.

    The mouth's few pixels carry the whole smile scale and the eyes its upper degrees; a pixel loss
    that weighs them like the rest lets a 64-number code spend itself on hair and scenery.
    """
    coords = (torch.arange(size) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    x, y = x.view(1, 1, size, size), y.view(1, 1, size, size)
    mouth_y = marks["mouth_y"].view(-1, 1, 1, 1)
    eye_y, eye_dx = marks["eye_y"].view(-1, 1, 1, 1), marks["eye_dx"].view(-1, 1, 1, 1)
    mouth = torch.exp(-((x / 0.28) ** 2 + ((y - mouth_y) / 0.09) ** 2))
    eyes = torch.exp(-(((x.abs() - eye_dx) / 0.1) ** 2 + ((y - eye_y) / 0.07) ** 2))
    return 14 * mouth + 3 * eyes


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Face-weighted squared error plus an L1 match of image gradients (``extra``: more weight per pixel).

    Plain squared error is content with a soft mouth line one pixel wide, and that line is the
    whole difference between a faint and a gentle smile; matching gradients keeps edges sharp.
    """
    weight = _face_weight(x.shape[-1]).to(x)
    if extra is not None:
        weight = (weight + extra.to(x)) / (1 + extra.mean())  # the same overall scale, moved onto features
    pixel = ((y - x) ** 2 * weight).mean()
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    edges = ((dy(y) - dy(x)).abs() * weight[..., 1:, :]).mean() + ((dx(y) - dx(x)).abs() * weight[..., :, 1:]).mean()
    return pixel + 0.05 * edges


def train_autoencoder(data: RenderSet, cfg: TrainConfig) -> tuple[Encoder, Generator]:
    """E and G on the pixel loss, with a linear probe that must read each render's five attribute
    values off its code ``w`` (trained along with them, then dropped).

    On pixels alone the code kept the degrees only as well as the pixels counted them: a smile is a
    few mouth pixels, so re-encoded faces drew it between degrees, and every reader read it
    unsurely (the grader: a third of smiles under probability 0.8, 80% exact). Any small move of
    the code then flipped such readings, and edits of one attribute seemed to change the others.
    With the probe the code must carry every degree plainly, and G learns to draw what it carries.
    """
    torch.manual_seed(cfg.seed + 1)
    encoder, generator = Encoder(w_dim=cfg.w_dim), Generator(w_dim=cfg.w_dim)
    values = data.portraits.attributes  # (N, A) the world's continuous degrees
    probe = torch.nn.Linear(cfg.w_dim, values.shape[1])
    params = list(encoder.parameters()) + list(generator.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.ae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    marks = landmarks(data.portraits)
    bf16 = _bf16_ok()
    bar = _steps("autoencoder", cfg.ae_steps, cfg.progress)
    for step in bar:
        idx = torch.randint(len(data), (cfg.ae_batch,), generator=g)
        x = data.batch(idx)
        with _autocast(bf16):
            w = encoder(x)
            y = generator(w)
        mse = F.mse_loss(y.float(), x)
        extra = feature_weight({k: v[idx] for k, v in marks.items()}, x.shape[-1])
        # keep codes near the unit ball so the latent space has a scale walks can rely on
        loss = reconstruction_loss(y.float(), x, extra) + 1e-3 * w.float().pow(2).mean()
        loss = loss + cfg.ae_probe_weight * F.smooth_l1_loss(probe(w.float()), values[idx])
        _optimise(params, step, cfg.ae_steps, cfg.ae_lr, opt, loss)
        if step % 50 == 0:
            bar.set_postfix(psnr=f"{-10 * math.log10(max(mse.item(), 1e-10)):.2f}dB")
    encoder.eval().requires_grad_(False)
    generator.eval().requires_grad_(False)
    codes = encode_all(encoder, data)
    generator.w_mean.copy_(codes.mean(0))
    generator.w_cov.copy_(torch.cov(codes.T))
    return encoder, generator


@torch.no_grad()
def reconstruct_all(encoder: Encoder, generator: Generator, data: RenderSet, chunk: int = 256) -> torch.Tensor:
    """G(E(x)) for the whole set, as uint8 (bfloat16 where the CPU has it: these are training inputs)."""
    out = torch.empty_like(data.images)
    for s in range(0, len(data), chunk):
        idx = torch.arange(s, min(s + chunk, len(data)))
        with _autocast(_bf16_ok()):
            out[idx] = to_uint8(generator(encoder(data.batch(idx))).float())
    return out


# --------------------------------------------------------------------------- 4, 5, 7. predictors


def _blur(x: torch.Tensor) -> torch.Tensor:
    """A separable [1 4 6 4 1] blur, edges replicated, as five shifted multiply-adds per direction.

    The same numbers, bit for bit, as the two depthwise ``conv2d`` calls it replaced (a tested
    property: shipped models reproduce), at a twentieth of their time on a CPU: those convolutions
    took 107 ms of each 125 ms augmented batch of 64.
    """
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k / k.sum()).to(x)
    height, width = x.shape[-2:]
    padded = F.pad(x, (2, 2, 0, 0), mode="replicate")
    rows = padded[..., 0:width] * k[0]
    for i in range(1, 5):
        rows = torch.addcmul(rows, padded[..., i:i + width], k[i])
    padded = F.pad(rows, (0, 0, 2, 2), mode="replicate")
    out = padded[..., 0:height, :] * k[0]
    for i in range(1, 5):
        out = torch.addcmul(out, padded[..., i:i + height, :], k[i])
    return out


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random softening and sensor noise, so a predictor reads slightly blurry generated faces.

    Up to half a blur and 1% noise: stronger (a full blur, 2%) hid the few pixels between smile
    degrees and cost the evaluation predictor 3 points of agreement on smiles."""
    t = torch.rand(x.shape[0], 1, 1, 1, generator=g) * 0.5
    x = torch.lerp(x, _blur(x), t)
    noise = torch.randn(x.shape, generator=g) * (0.01 * torch.rand(x.shape[0], 1, 1, 1, generator=g))
    return (x + noise).clamp(0, 1)


def train_predictor(
    data: RenderSet, cfg: TrainConfig, reconstructions: torch.Tensor | None, model: AttributePredictor,
    seed: int, augment: bool, name: str, steps: int,
) -> AttributePredictor:
    """Cross-entropy on degree labels, plus a small pull of the expected degree to the true value."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed + 1)
    degrees, values = data.degrees(), data.portraits.attributes
    steps_range = torch.arange(model.num_degrees).float()
    bf16 = _bf16_ok()
    bar = _steps(name, steps, cfg.progress)
    for step in bar:
        idx = torch.randint(len(data), (cfg.batch,), generator=g)
        x = data.batch(idx)
        if reconstructions is not None:  # half of each batch read from G(E(x))
            use_rec = torch.rand(cfg.batch, generator=g) < 0.5
            x[use_rec] = reconstructions[idx[use_rec]].float() / 255
        if augment:
            x = _augment(x, g)
        with _autocast(bf16):
            logits = model(x).float()  # (B, A, D)
        ce = F.cross_entropy(logits.reshape(-1, model.num_degrees), degrees[idx].reshape(-1))
        expected = (logits.softmax(-1) * steps_range).sum(-1)
        loss = ce + 0.1 * F.smooth_l1_loss(expected, values[idx])
        _optimise(list(model.parameters()), step, steps, cfg.lr, opt, loss)
        if step % 50 == 0:
            bar.set_postfix(ce=f"{ce.item():.3f}")
    return model.eval().requires_grad_(False)


def train_second_predictor(data: RenderSet, cfg: TrainConfig, reconstructions: torch.Tensor | None) -> AttributePredictor:
    """The second steering predictor: narrower than P (a third of its compute), another seed, and
    trained on softened, noisy images, so its blind spots are not P's. Its initial weights come from
    its own seed, so it starts the same in a full run and in ``chatedit train second-predictor``."""
    torch.manual_seed(cfg.seed + 20)
    model = AttributePredictor(num_attributes=len(attribute_columns()), channels=(32, 64, 128))
    return train_predictor(data, cfg, reconstructions, model, seed=cfg.seed + 21,
                           augment=True, name="second predictor", steps=cfg.second_predictor_steps)


# --------------------------------------------------------------------------- 6. identity


def train_identity(data: RenderSet, cfg: TrainConfig, reconstructions: torch.Tensor | None) -> IdentityEncoder:
    """Supervised contrastive loss: variants of one person attract, other people repel."""
    torch.manual_seed(cfg.seed + 7)
    model = IdentityEncoder()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(cfg.seed + 8)
    people = len(data) // cfg.variants
    per_batch = cfg.batch // cfg.variants
    bf16 = _bf16_ok()
    bar = _steps("identity", cfg.identity_steps, cfg.progress)
    for step in bar:
        chosen = torch.randperm(people, generator=g)[:per_batch]
        idx = (chosen[:, None] * cfg.variants + torch.arange(cfg.variants)).reshape(-1)
        x = data.batch(idx)
        if reconstructions is not None:
            use_rec = torch.rand(len(idx), generator=g) < 0.5
            x[use_rec] = reconstructions[idx[use_rec]].float() / 255
        with _autocast(bf16):
            z = model(x).float()
        person = data.person[idx]
        logits = z @ z.T / 0.1
        logits = logits - torch.eye(len(idx)) * 1e4  # never one's own pair
        positive = (person[:, None] == person[None, :]) & ~torch.eye(len(idx), dtype=torch.bool)
        log_prob = logits.log_softmax(-1)
        loss = -(log_prob * positive).sum(-1).div(positive.sum(-1)).mean()
        _optimise(list(model.parameters()), step, cfg.identity_steps, cfg.lr, opt, loss)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------- all of it


def train_builtin(out_dir: str | Path, cfg: TrainConfig) -> dict[str, float]:
    """Trains every built-in model and writes them to ``out_dir``; returns seconds per stage."""
    out_dir = Path(out_dir)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        times[name] = round(time.perf_counter() - t0, 1)
        logger.info("%s done in %.1fs", name, times[name])
        t0 = time.perf_counter()

    # 1. training renders
    data = render_set(cfg.people, cfg.variants, seed=cfg.seed + 100, progress=cfg.progress)
    lap("render")
    # 2. autoencoder
    encoder, generator = train_autoencoder(data, cfg)
    save_model(encoder, out_dir / MODEL_FILES["encoder"])
    save_model(generator, out_dir / MODEL_FILES["generator"])
    lap("autoencoder")
    # 3. reconstructions
    recon = reconstruct_all(encoder, generator, data)
    lap("reconstruct")
    # 4. steering predictor, its heads (like every model sized by the attributes) in the render set's
    #    columns: the order of prompts/attributes.yaml, recorded beside the weights
    names = attribute_columns()
    predictor = train_predictor(data, cfg, recon, AttributePredictor(num_attributes=len(names)), seed=cfg.seed + 3,
                                augment=False, name="predictor", steps=cfg.predictor_steps)
    write_trained_attributes(out_dir, names, replace=True)
    save_model(predictor, out_dir / MODEL_FILES["predictor"])
    lap("predictor")
    # 5. evaluation predictor: another architecture, seed and augmentation
    eval_model = AttributePredictor(num_attributes=len(names), channels=(32, 64, 128, 256), patch=2, res_blocks=False)
    eval_predictor = train_predictor(data, cfg, recon, eval_model, seed=cfg.seed + 5, augment=True,
                                     name="eval predictor", steps=cfg.eval_predictor_steps)
    save_model(eval_predictor, out_dir / MODEL_FILES["eval_predictor"])
    lap("eval_predictor")
    # 6. identity encoder
    identity = train_identity(data, cfg, recon)
    save_model(identity, out_dir / MODEL_FILES["identity"])
    lap("identity")
    # 7. the second steering predictor: last of the models, so the stages before it start as they did without it
    save_model(train_second_predictor(data, cfg, recon), out_dir / MODEL_FILES["second_predictor"])
    lap("second_predictor")
    # 8. semantic fields, the linear baseline and the degree offsets
    #    (field_steps=0 leaves them to `chatedit train field`)
    if cfg.field_steps <= 0:
        return times
    fields_cfg = FieldConfig(steps=cfg.field_steps, fit_steps=cfg.field_fit_steps, pairs=cfg.field_pairs,
                             seed=cfg.seed + 11, progress=cfg.progress)
    linear, fields, offsets = train_all_fields(encoder, generator, predictor, identity, data, fields_cfg,
                                               lambda: _autocast(_bf16_ok()))
    save_fields(out_dir, linear, fields, offsets)
    lap("fields")
    return times


def save_fields(out_dir: Path, linear, fields: dict[str, LatentField], offsets) -> None:
    """Writes the linear baseline and the degree offsets (rows in the vocabulary's order, recorded
    in ``attributes.json``) and each field to ``field_<name>.safetensors``."""
    names = attribute_columns()
    if set(fields) != set(names):
        raise ValueError(f"fields for ({', '.join(fields)}), but prompts/attributes.yaml lists ({', '.join(names)})")
    write_trained_attributes(out_dir, names)
    save_model(linear, Path(out_dir) / LINEAR_FILE)
    save_model(offsets, Path(out_dir) / OFFSETS_FILE)
    for name, field in fields.items():
        save_model(field, Path(out_dir) / FIELD_FILE.format(name=name))


def train_second_predictor_only(weights_dir: str | Path, out_dir: str | Path, cfg: TrainConfig) -> dict[str, float]:
    """``chatedit train second-predictor``: the second steering predictor over existing E and G,
    from the renders and reconstructions a full run uses."""
    start = time.perf_counter()
    # a lone predictor joins the models of a folder whose attributes.json governs it: refuse one that
    # records another order than this predictor's heads will have (the vocabulary's)
    if (Path(out_dir) / ATTRIBUTES_FILE).is_file():
        check_trained_attributes(out_dir)
    encoder, generator = (load_model(Path(weights_dir) / MODEL_FILES[k]) for k in ("encoder", "generator"))
    data = render_set(cfg.people, cfg.variants, seed=cfg.seed + 100, progress=cfg.progress)
    model = train_second_predictor(data, cfg, reconstruct_all(encoder, generator, data))
    save_model(model, Path(out_dir) / MODEL_FILES["second_predictor"])
    return {"second_predictor": round(time.perf_counter() - start, 1)}


def train_fields_only(weights_dir: str | Path, out_dir: str | Path, cfg: TrainConfig) -> dict[str, float]:
    """``chatedit train field``: fields, linear baseline and degree offsets over existing E, G, P and
    I, from the renders a full run uses (so, over the shipped models, the fields a full run would train)."""
    start = time.perf_counter()
    check_trained_attributes(weights_dir)  # the fields learn to move what P's heads read, by the vocabulary's names
    models = {k: load_model(Path(weights_dir) / MODEL_FILES[k])
              for k in ("encoder", "generator", "predictor", "identity")}   # only what the fields train against
    data = render_set(cfg.people, cfg.variants, seed=cfg.seed + 100, progress=cfg.progress)
    fields_cfg = FieldConfig(steps=cfg.field_steps, fit_steps=cfg.field_fit_steps, pairs=cfg.field_pairs,
                             seed=cfg.seed + 11, progress=cfg.progress)
    linear, fields, offsets = train_all_fields(models["encoder"], models["generator"], models["predictor"],
                                               models["identity"], data, fields_cfg, lambda: _autocast(_bf16_ok()))
    save_fields(Path(out_dir), linear, fields, offsets)
    return {"fields": round(time.perf_counter() - start, 1)}
