"""``chatedit bench edit``: do field walks land on the requested degree and keep the rest?

Held-out faces (fresh renders, encoded) are edited to random reachable targets for every
attribute, by the semantic field and by the linear baseline, on the same faces and targets; on the
built-in backend also by the field walk without its closing polish (``field_unpolished``), so what
the polish adds is measured apart from what the field does.
Edits are steered by the attribute predictor but graded by the independent evaluation predictor:
- ``exact`` / ``within1``: the evaluation predictor reads the target degree (or one off);
- ``preserved``: each other attribute keeps the degree the evaluation predictor read before;
- ``identity``: identity similarity of the edited face to the unedited one.
For the built-in backend the same jobs are also graded for an ``oracle``: the world's own answer,
the same person re-rendered at the target degree with everything else as it was, then encoded and
drawn as any face is. It is what the right face gives once it has passed through the encoder,
so it shows what the reconstruction and the grader leave of a perfect edit. It is a reference,
not a bound: a walk never encodes the edited face, and can land where G draws the degree more
clearly than the re-encoded face.
A target is reachable when the world has such a face: the same person with that degree must be
one the renderer's people can be (``is_plausible``: beards only on men, stubble from the teens,
longer beards from adulthood; so no beard on a woman and no bearded child). Every attribute gets
``faces`` edits of as many faces: the first ``faces`` faces give one job each per attribute, and an
attribute few of them can change (beard: about two in five) takes further held-out faces in turn
until it has as many.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from chatedit.attributes import attribute_names
from chatedit.bench_builtin import batched
from chatedit.progress import bar
from chatedit.tools.builtin.backend import BuiltinBackend
from chatedit.tools.builtin.renderer import Portraits, is_plausible, render, sample_portraits
from chatedit.tools.walk import FIELD_PHASES, FaceState, Nudge, Repair, edit

TARGETS = {"exact": 0.85, "within1": 0.97, "preserved": 0.90, "identity": 0.85}
# name → how ``edit`` is asked: a method and the phases that follow its approach
METHODS = {"field": dict(method="field", phases=FIELD_PHASES),
           "field_unpolished": dict(method="field", phases=(Repair(), Nudge())),  # no polish, no rescue
           "linear": dict(method="linear", phases=())}
BENCH_SEED = 60_000


@dataclass
class BenchFaces:
    """What the benchmark edits: held-out faces of a backend, and how to grade them."""

    codes: torch.Tensor  # (N, ...) latent codes of the held-out faces, more than are edited when some are spare
    reachable: Callable[[int, int, int], bool]  # (face, attribute, degree) → does the world have such a face
    eval_read: Callable[[torch.Tensor], torch.Tensor]  # images → (B, A) degrees by the evaluation predictor
    methods: tuple[str, ...]  # edit methods to compare (keys of ``METHODS``)
    oracle: Callable[[int, int, int], torch.Tensor] | None = None  # (face, attribute, degree) → (3, H, W) image


def builtin_faces(backend: BuiltinBackend, faces: int, spare: int = 3) -> BenchFaces:
    """Fresh renders, encoded; a target is reachable when the renderer's people can have it.
    ``spare`` × ``faces`` more people follow, for attributes the first ``faces`` cannot all change."""
    first, more = sample_portraits(faces, BENCH_SEED), sample_portraits(spare * faces, BENCH_SEED + 1)
    people = Portraits(*(torch.cat([getattr(first, k), getattr(more, k)]) for k in ("identity", "scene", "attributes")))

    def reachable(i: int, a: int, degree: int) -> bool:
        values = people.attributes[i : i + 1].clone()
        values[0, a] = degree
        return bool(is_plausible(people.identity[i : i + 1], values)[0])

    def eval_read(image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return backend.models.eval_predictor(image).argmax(-1)

    def oracle(i: int, a: int, degree: int) -> torch.Tensor:
        values = people.attributes[i : i + 1].clone()
        values[0, a] = degree
        with torch.no_grad():
            return backend.generate(backend.encode(render(people.index(slice(i, i + 1)).with_attributes(values))))[0]

    codes = torch.cat([backend.encode(render(people.index(slice(s, s + 200)))) for s in range(0, len(people), 200)])
    return BenchFaces(codes, reachable, eval_read, ("field", "field_unpolished", "linear"), oracle)


def sampled_faces(backend, faces: int, eval_read: Callable[[torch.Tensor], torch.Tensor]) -> BenchFaces:
    """Faces sampled from a generator (seeds the demo never draws); every degree counts as reachable."""
    codes = torch.cat([backend.sample(BENCH_SEED + i) for i in range(faces)])
    return BenchFaces(codes, lambda i, a, degree: True, eval_read, ("field",))


def inverted_faces(backend, faces: int, eval_read: Callable[[torch.Tensor], torch.Tensor],
                   refine_steps: int = 200, progress: bool = False, inversion: str | None = None) -> BenchFaces:
    """``sampled_faces`` drawn and inverted as uploaded photos are (the StyleGAN2 backend's inversion,
    ``inversion`` "w" or "wplus", default the backend's, and its Pivotal Tuning when on), so edits
    start from what an upload gives; one face at a time (``progress``: a bar over them on stderr)."""
    sampled = sampled_faces(backend, faces, eval_read)
    with torch.no_grad():
        images = torch.cat([backend.generate(code[None]) for code in sampled.codes])
    codes = torch.cat([backend.encode(image[None], refine_steps=refine_steps, inversion=inversion)
                       for image in bar(images, f"inverting faces ({inversion or backend.inversion})",
                                        show=progress, unit="face")])
    return BenchFaces(codes, sampled.reachable, eval_read, sampled.methods)


def run(backend, faces: int = 200, timing_edits: int = 60, bench: BenchFaces | None = None,
        progress: bool = False) -> dict:
    """Every method's edits of ``bench`` (default: held-out built-in faces) graded, and their speed
    (``progress``: a bar per method on stderr)."""
    names = attribute_names()
    bench = bench or builtin_faces(backend, faces)
    codes, reachable, eval_read = bench.codes, bench.reachable, bench.eval_read
    g = torch.Generator().manual_seed(BENCH_SEED)

    # 1. one random reachable target per face and attribute, shared by every method, until every
    #    attribute has ``faces`` of them (spare faces only serve attributes still short)
    start_images = batched(backend.generate, codes, 200)
    start_steer = batched(lambda x: backend.predict(x).degrees, start_images, 200)
    start_eval = batched(eval_read, start_images, 200)
    start_identity = batched(backend.identity, start_images, 200)
    jobs, count = [], [0] * len(names)
    for i in range(len(codes)):
        for a in range(len(names)):
            if i >= faces and count[a] >= faces:
                continue
            choices = [d for d in range(6) if d != int(start_steer[i, a]) and reachable(i, a, d)]
            if choices:
                jobs.append((i, a, choices[int(torch.randint(len(choices), (1,), generator=g))]))
                count[a] += 1
        if min(count) >= faces:
            break

    # 2. walk every job with every method and grade with the evaluation predictor
    result: dict = {}
    step_ms: list[float] = []
    for method in bench.methods:
        tallies = {n: {"exact": [], "within1": [], "preserved": [], "identity": [], "reasons": {}} for n in names}
        for i, a, target in bar(jobs, f"bench edit: {method}", show=progress, unit="edit"):
            state = FaceState(codes[i : i + 1], start_identity[i : i + 1])
            stamps = [time.perf_counter()]
            out = edit(backend, state, names[a], target=target, **METHODS[method],
                       on_frame=lambda _: stamps.append(time.perf_counter()))
            # a step is the time between consecutive frames: field, generator, predictor, bookkeeping
            step_ms += [1000 * (b - a_) for a_, b in zip(stamps[1:], stamps[2:])]
            tally = tallies[names[a]]
            _grade(tally, eval_read(out.image[None])[0], start_eval[i], a, target, out.identity_similarity)
            reason = out.reason or "reached"
            tally["reasons"][reason] = tally["reasons"].get(reason, 0) + 1
        result[method] = {n: _rates(t) | {"outcomes": t["reasons"]} for n, t in tallies.items()}

    # 3. the world's own answer to every job, encoded: what the reconstruction and the grader leave of it
    if bench.oracle is not None:
        tallies = {n: {"exact": [], "within1": [], "preserved": [], "identity": []} for n in names}
        for i, a, target in bar(jobs, "bench edit: oracle", show=progress, unit="edit"):
            image = bench.oracle(i, a, target)
            with torch.no_grad():
                similarity = float(backend.similarity(backend.identity(image[None]), start_identity[i : i + 1])[0])
            _grade(tallies[names[a]], eval_read(image[None])[0], start_eval[i], a, target, similarity)
        result["oracle"] = {n: _rates(t) for n, t in tallies.items()}

    # 4. speed of a one-degree edit, the common request
    edit_ms = []
    for k in bar(range(timing_edits), "bench edit: timing", show=progress, unit="edit"):
        i, a = k % faces, k % len(names)
        change = 1 if int(start_steer[i, a]) < 5 else -1
        if not reachable(i, a, int(start_steer[i, a]) + change):
            continue
        t0 = time.perf_counter()
        edit(backend, FaceState(codes[i : i + 1], start_identity[i : i + 1]), names[a], change=change)
        edit_ms.append(1000 * (time.perf_counter() - t0))
    result["ms_per_step"] = round(statistics.median(step_ms), 2)
    result["ms_per_edit"] = round(statistics.median(edit_ms), 1)
    result["faces"] = faces
    result["faces_drawn"] = len({i for i, _, _ in jobs})
    result["backend"] = backend.name
    result["threads"] = torch.get_num_threads()
    result["precision"] = str(backend.compute_dtype).removeprefix("torch.")
    return result


def _grade(tally: dict, final: torch.Tensor, start: torch.Tensor, a: int, target: int,
           similarity: float | None) -> None:
    """Adds one edit to ``tally``: the evaluation predictor's degrees (A,) after it and before it."""
    tally["exact"].append(int(final[a]) == target)
    tally["within1"].append(abs(int(final[a]) - target) <= 1)
    tally["preserved"] += [int(final[b]) == int(start[b]) for b in range(len(final)) if b != a]
    tally["identity"].append(similarity)


def _rates(tally: dict) -> dict:
    """A tally's fractions (rounded) and its number of edits."""
    rates = {k: round(sum(map(float, tally[k])) / max(1, len(tally[k])), 4)
             for k in ("exact", "within1", "preserved", "identity")}
    return rates | {"edits": len(tally["exact"])}


def markdown(result: dict) -> str:
    def cell(method: str, name: str, key: str) -> str:
        value = result[method][name][key]
        ok = "✅" if value >= TARGETS[key] else "❌"
        return f"{value:.1%} {ok}" if key != "identity" else f"{value:.3f} {ok}"

    lines = [
        f"{result['faces']} edits per attribute, each of another held-out face ({result.get('faces_drawn', result['faces'])} "
        f"faces in all: an attribute the first {result['faces']} cannot all change takes further ones), to random "
        "reachable targets, graded by the evaluation predictor",
        "",
        "| attribute | method | edits | exact (≥ 85%) | within one (≥ 97%) | others preserved (≥ 90%) | identity (≥ 0.85) | field better? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    methods = [m for m in ("field", "field_unpolished", "linear", "oracle") if m in result]
    for name in attribute_names():
        verdict = "(no baseline)"
        if "linear" in result:
            f, lin = result["field"][name], result["linear"][name]
            better = f["identity"] >= lin["identity"] and f["preserved"] >= lin["preserved"] and f["exact"] >= lin["exact"]
            verdict = "yes" if better else "no: " + ", ".join(
                k for k in ("identity", "preserved", "exact") if f[k] < lin[k]
            ) + " lower"
        for method in methods:
            lines.append(
                f"| {name} | {method} | {result[method][name]['edits']} | {cell(method, name, 'exact')} | "
                f"{cell(method, name, 'within1')} | {cell(method, name, 'preserved')} | {cell(method, name, 'identity')} | "
                f"{verdict if method == 'field' else ''} |"
            )
    lines += [
        "",
        f"Median time per walk step: {result['ms_per_step']:.1f} ms (target ≤ 15 ms); median one-degree edit: "
        f"{result['ms_per_edit']:.0f} ms (target ≤ 400 ms), on {result['threads']} CPU threads, networks in "
        f"{result.get('precision', 'float32')}.",
    ]
    if "field_unpolished" in result:
        lines += ["", "field_unpolished: the same field walks without their closing polish (a few gradient steps "
                  "on the code against the steering predictors): what the field does alone."]
    if "oracle" in result:
        lines += ["", "oracle: no walk; the same person re-rendered at the target degree, encoded and drawn: what the "
                  "reconstruction and the evaluation predictor leave of a perfect edit (a reference, not a bound: "
                  "walks never pass the edited face through the encoder)."]
    return "\n".join(lines)


INVERSION_NAMES = {"w": "W inversion (one code on every layer, as the fields were trained)",
                   "wplus": "W+ inversion (layers free to differ)"}


def by_inversion_markdown(results: dict) -> str:
    """``markdown`` of the same benchmark on faces inverted each way (``{"w": result, "wplus": result}``)."""
    return "\n\n".join(f"### {INVERSION_NAMES.get(name, name)}\n\n{markdown(result)}"
                       for name, result in results.items())
