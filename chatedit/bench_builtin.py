"""``chatedit bench builtin``: how good is the built-in world's learned machinery?

Everything is measured on fresh renders from seeds the training never used:
- ``psnr_db``: reconstruction PSNR of G(E(x)) (encoder only, no optimisation);
- ``psnr_db_refined``: the same after the upload path's optimisation refinement;
- ``predictor_exact`` / ``predictor_within1``: the steering predictor against the render labels;
- ``identity_auc``: verification AUC of the identity encoder, same person (different attributes
  and scene) against different people;
- ``eval_agreement_within1``: the evaluation predictor on G(E(x)) against the render labels.
"""

from __future__ import annotations

import time

import torch

from chatedit.attributes import attribute_names
from chatedit.progress import bar
from chatedit.tools.builtin.backend import BuiltinBackend
from chatedit.tools.builtin.data import render_set

TARGETS = {
    "psnr_db": 26.0,
    "predictor_exact": 0.90,
    "predictor_within1": 0.99,
    "identity_auc": 0.97,
    "eval_agreement_within1": 0.95,
}
BENCH_SEED = 50_000  # training uses seeds below 10_000


def roc_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    scores = torch.cat([positive, negative])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=scores.dtype)
    # average ranks over ties
    uniq, inverse = scores.unique(return_inverse=True)
    sums = torch.zeros_like(uniq).index_add_(0, inverse, ranks)
    counts = torch.zeros_like(uniq).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _per_attribute(hits: torch.Tensor) -> dict[str, float]:
    return {name: round(float(hits[:, i].float().mean()), 4) for i, name in enumerate(attribute_names())}


@torch.no_grad()
def batched(fn, images: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """``fn`` over ``images`` in chunks, the results concatenated: a large set without its activations at once."""
    return torch.cat([fn(images[s : s + chunk]) for s in range(0, len(images), chunk)])


def _next_stage(stages, name: str) -> None:
    """Counts the stage under way as done and shows ``name`` as the next."""
    stages.update()
    stages.set_postfix_str(name)


def run(backend: BuiltinBackend, people: int = 300, variants: int = 4, refine: int = 48, refine_steps: int = 40,
        progress: bool = False) -> dict:
    """Every measure on fresh renders (``progress``: a bar over the stages on stderr)."""
    t0 = time.perf_counter()
    stages = bar(None, "bench builtin", show=progress, total=5, unit="stage")
    stages.set_postfix_str("rendering")
    data = render_set(people, variants, seed=BENCH_SEED, progress=progress)
    images = data.images.float() / 255
    labels = data.degrees()
    models = backend.models

    # 1. reconstruction
    _next_stage(stages, "reconstruction")
    codes = batched(models.encoder, images)
    recon = batched(models.generator, codes)
    psnr = -10 * torch.log10(((recon - images) ** 2).mean(dim=(1, 2, 3)))
    refined = backend.generate(backend.encode(images[:refine], refine_steps=refine_steps))
    psnr_refined = -10 * torch.log10(((refined - images[:refine]) ** 2).mean(dim=(1, 2, 3)))

    # 2. steering predictor on renders
    _next_stage(stages, "steering predictor")
    predicted = batched(lambda x: models.predictor(x).argmax(-1), images)
    error = (predicted - labels).abs()

    # 3. evaluation predictor on reconstructions
    _next_stage(stages, "evaluation predictor")
    eval_on_recon = batched(lambda x: models.eval_predictor(x).argmax(-1), recon)
    eval_on_render = batched(lambda x: models.eval_predictor(x).argmax(-1), images)

    # 4. identity verification: every same-person pair against every different-person pair
    _next_stage(stages, "identity")
    emb = batched(models.identity, images)
    sim = emb @ emb.T
    same = data.person[:, None] == data.person[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    auc = roc_auc(sim[same & upper], sim[~same & upper])
    _next_stage(stages, "done")
    stages.close()

    return {
        "faces": len(data),
        "psnr_db": round(float(psnr.mean()), 2),
        "psnr_db_refined": round(float(psnr_refined.mean()), 2),
        "predictor_exact": _per_attribute(error == 0),
        "predictor_within1": _per_attribute(error <= 1),
        "identity_auc": round(auc, 4),
        "identity_same_mean": round(float(sim[same & upper].mean()), 3),
        "identity_other_mean": round(float(sim[~same & upper].mean()), 3),
        "eval_agreement_within1": _per_attribute((eval_on_recon - labels).abs() <= 1),
        "eval_exact_on_renders": _per_attribute(eval_on_render == labels),
        "eval_exact_on_reconstructions": _per_attribute(eval_on_recon == labels),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def markdown(result: dict) -> str:
    def mark(value: float, key: str) -> str:
        return "✅" if value >= TARGETS[key] else "❌"

    lines = [
        f"Built-in backend on {result['faces']} fresh renders",
        "",
        "| metric | value | target |",
        "|---|---|---|",
        f"| reconstruction PSNR, G(E(x)) | {result['psnr_db']:.2f} dB {mark(result['psnr_db'], 'psnr_db')} | ≥ 26 dB |",
        f"| reconstruction PSNR, E + {result.get('refine_steps', 40)}-step refinement | {result['psnr_db_refined']:.2f} dB | |",
        f"| identity verification AUC | {result['identity_auc']:.4f} {mark(result['identity_auc'], 'identity_auc')} | ≥ 0.97 |",
        "",
        "| attribute | predictor exact (≥ 90%) | predictor within one (≥ 99%) | eval predictor on G(E(x)), within one (≥ 95%) |",
        "|---|---|---|---|",
    ]
    for name in attribute_names():
        exact, within = result["predictor_exact"][name], result["predictor_within1"][name]
        agree = result["eval_agreement_within1"][name]
        lines.append(
            f"| {name} | {exact:.1%} {mark(exact, 'predictor_exact')} | {within:.1%} {mark(within, 'predictor_within1')} "
            f"| {agree:.1%} {mark(agree, 'eval_agreement_within1')} |"
        )
    return "\n".join(lines)
