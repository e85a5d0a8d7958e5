"""What one replica costs: each backend built at its full published size and timed on this device.

``chatedit bench speed --backend stylegan2|diffusion`` builds the backend's models in code, at the
sizes their published files have (rosinality's StyleGAN2 generator at 128 or 1024 px with
Talk-to-Edit's five semantic fields, attribute predictor and ArcFace; Stable Diffusion 1.5's UNet,
VAE and text encoder from their published configs, SD 1.5's own CLIP tokenizer, and open_clip's
ViT-B-32 as the degree reader), with random weights. The time a network takes does not depend on
its weight values, so the figures are real ones for capacity planning (how many replicas a GPU
holds, how long a turn takes), never a claim about the quality of an edit.

Each figure times the backend's own code, as a walk calls it: a walk step is the backend's step
along the attribute (``step``), the frame drawn (``generate``) and read (``predict``); a one-degree
edit is ``capabilities.substeps`` such steps and an identity reading. Peak memory is the process's
resident set (CPU) and CUDA's peak allocation (GPU) over the whole run, building included.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Stable Diffusion 1.5's published configs (unet/, vae/ and text_encoder/config.json), the values that set a size
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD15_VAE = dict(sample_size=512, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4)
SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
CLIP_READER = "ViT-B-32"  # the diffusion backend's default degree reader (DEFAULT_CLIP's model)
BACKENDS = ("stylegan2", "diffusion", "wplus")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device, repeats: int) -> dict:
    """Median and spread of ``repeats`` calls after one warm-up call (ms)."""
    call()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return {"ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1), "repeats": repeats}


def once(call: Callable[[], object], device: torch.device) -> dict:
    """One call, for what caches its result (a photo's inversion) or takes minutes (ms)."""
    _sync(device)
    start = time.perf_counter()
    call()
    _sync(device)
    return {"ms": round((time.perf_counter() - start) * 1000, 1), "repeats": 1}


def parameters(*modules: torch.nn.Module) -> float:
    """Millions of parameters."""
    return round(sum(p.numel() for m in modules for p in m.parameters()) / 1e6, 1)


# --------------------------------------------------------------------------- StyleGAN2


def stylegan2_backend(resolution: int, device: torch.device):
    """Talk-to-Edit's StyleGAN2 backend at ``resolution`` (128 or 1024 px), every network at its published size."""
    from chatedit.tools.stylegan2 import talk_to_edit as tte
    from chatedit.tools.stylegan2.backend import StyleGAN2Backend
    from chatedit.tools.stylegan2.generator import Generator

    if resolution not in (128, 1024):
        raise ValueError(f"Talk-to-Edit publishes 128 and 1024 px generators, not {resolution}")
    # Talk-to-Edit's 128 px generator is rosinality's with channel multiplier 1; the 1024 px one, FFHQ's, 2
    generator = Generator(resolution, 512, 8, channel_multiplier=1 if resolution == 128 else 2).to(device).eval()
    generator.requires_grad_(False)
    fields = [tte.FieldNetwork() for _ in range(5)]
    predictor, arcface = tte.AttributePredictor().eval(), tte.ArcFaceResNet18().eval()
    backend = StyleGAN2Backend(generator, fields, predictor, arcface, pti_steps=0)
    return backend, parameters(generator, *fields, predictor, arcface)


def bench_stylegan2(resolution: int, device: torch.device, repeats: int, inversion_steps: int,
                    progress: bool) -> dict:
    started = time.perf_counter()
    backend, params = stylegan2_backend(resolution, device)
    built_s = time.perf_counter() - started
    substeps = backend.capabilities.substeps
    w = backend.sample(0)
    image = backend.generate(w)
    a = backend.attributes.index("smiling")

    def walk_step():
        moved = w + backend.step("field", a, w) / substeps
        backend.predict(backend.generate(moved))

    def one_degree():
        moved = w
        for _ in range(substeps):
            moved = moved + backend.step("field", a, moved) / substeps
            frame = backend.generate(moved)
            backend.predict(frame)
        backend.identity(frame)

    stages = {
        "draw a frame (generate)": lambda: backend.generate(w),
        "read degrees (predict)": lambda: backend.predict(image),
        "read identity": lambda: backend.identity(image),
        "field step (one walk step's share)": lambda: backend.step("field", a, w),
        "walk step (step + draw + read)": walk_step,
        f"one-degree edit ({substeps} walk steps + identity)": one_degree,
    }
    timings = {}
    for name, call in stages.items():
        _say(progress, name)
        timings[name] = timed(call, device, repeats)
    name = f"inversion ({inversion_steps} optimisation steps)"
    _say(progress, name)
    timings[name] = once(lambda: backend.encode(image, refine_steps=inversion_steps, inversion="w"), device)
    per_step = timings[name]["ms"] / max(inversion_steps, 1)
    full = backend.capabilities.refine_steps
    return {"resolution": resolution, "parameters_m": params, "build_s": round(built_s, 1), "timings": timings,
            "inversion_step_ms": round(per_step, 1),
            "estimates": {f"inversion ({full} steps, the backend's default)": round(per_step * full / 1000, 1)}}


# --------------------------------------------------------------------------- diffusion


def sd15_tokenizer(folder: Path):
    """SD 1.5's CLIP tokenizer (``vocab.json`` and ``merges.txt``), made from the BPE table open_clip
    ships, which is OpenAI CLIP's: 256 bytes, the same ending a word, 48 894 merges and two markers."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>",
                         model_max_length=77)


def sd15_modules(device: torch.device):
    """SD 1.5's UNet, VAE and text encoder at their published sizes (random weights), its CLIP tokenizer,
    and the dtype the photo backends pick on ``device``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    dtype = torch.float16 if device.type == "cuda" else torch.float32  # as the pipelines' loaders pick
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = sd15_tokenizer(Path(folder))
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id, **SD15_TEXT))
    return UNet2DConditionModel(**SD15_UNET), AutoencoderKL(**SD15_VAE), text_encoder, tokenizer, dtype


SD15_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def diffusion_backend(device: torch.device, steps: int):
    """The diffusion backend over SD 1.5 at its published size, LEDITS++ as ``load_pipeline`` sets it up."""
    import open_clip
    from diffusers import DPMSolverMultistepScheduler, LEditsPPPipelineStableDiffusion

    from chatedit.tools.diffusion.backend import DiffusionBackend, load_texts
    from chatedit.tools.diffusion.pipeline import ready
    from chatedit.tools.diffusion.reader import ClipDegreeReader, degree_prompts

    unet, vae, text_encoder, tokenizer, dtype = sd15_modules(device)
    scheduler = DPMSolverMultistepScheduler(**SD15_BETAS)  # ``ready`` sets the solver
    pipe = LEditsPPPipelineStableDiffusion(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
    pipe = ready(pipe if dtype == torch.float32 else pipe.to(dtype=dtype), device)
    clip = open_clip.create_model(CLIP_READER, pretrained=None, device=device).eval().requires_grad_(False)
    texts = load_texts()
    reader = ClipDegreeReader(clip, open_clip.get_tokenizer(CLIP_READER), degree_prompts(texts), device)
    backend = DiffusionBackend(pipe, reader, texts, inversion_steps=steps, new_face_steps=steps)
    return backend, parameters(unet, vae, text_encoder, clip)


def bench_diffusion(device: torch.device, repeats: int, steps: int, progress: bool) -> dict:
    started = time.perf_counter()
    backend, params = diffusion_backend(device, steps)
    built_s = time.perf_counter() - started
    size = backend.resolution
    photo = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    substeps = backend.capabilities.substeps
    a = backend.attributes.index("smiling")
    timings = {}
    name = f"inversion ({steps} denoising steps)"
    _say(progress, name)
    timings[name] = once(lambda: backend.encode(photo), device)  # cached afterwards, as for a real photo
    latent = backend.encode(photo)
    image = backend.generate(latent)
    strength = [0.0]

    def ledits_pass():  # a new strength each call: a redraw of a latent already drawn is cached
        strength[0] += 0.01
        moved = latent.clone()
        moved[:, a] = 1 + strength[0]
        backend.generate(moved)

    def one_degree():
        moved = latent
        for _ in range(substeps):
            strength[0] += 0.01
            moved = moved + backend.step("field", a, moved) / substeps
            moved[:, a] += strength[0] / 1000  # never a cached strength
            frame = backend.generate(moved)
            backend.predict(frame)
        backend.identity(frame)

    vae = backend.pipe.vae
    code = torch.randn(1, 4, size // 8, size // 8, device=device, dtype=vae.dtype)
    stages = {
        f"LEDITS++ pass ({steps} steps, one concept)": ledits_pass,
        "VAE decode (each pass's last stage)": lambda: backend._decode(code),
        "read degrees (CLIP)": lambda: backend.predict(image),
        "read identity (dlib)": lambda: backend.identity(image),
        f"one-degree edit ({substeps} passes + reads + identity)": one_degree,
    }
    for name, call in stages.items():
        _say(progress, name)
        timings[name] = timed(call, device, repeats)
    one_pass = timings[f"LEDITS++ pass ({steps} steps, one concept)"]["ms"]
    decode = timings["VAE decode (each pass's last stage)"]["ms"]
    per_step = max(one_pass - decode, 0) / steps
    default = 30  # the backend's inversion steps, and so every pass's, unless --steps says otherwise
    return {"resolution": size, "parameters_m": params, "build_s": round(built_s, 1), "steps": steps,
            "timings": timings, "identity_model": "dlib" if backend.identity(image) is not None else None,
            "denoising_step_ms": round(per_step, 1),
            "estimates": {f"LEDITS++ pass ({default} steps, the default)": round((decode + per_step * default) / 1000, 1),
                          f"one-degree edit ({default} steps)": round(substeps * (decode + per_step * default) / 1000, 1)}}


# --------------------------------------------------------------------------- W+ adapter


def wplus_backend(device: torch.device, steps: int):
    """The W+ backend at its published sizes: SD 1.5 with the adapter on every cross-attention layer (as
    ``load_wplus_adapter`` installs it), e4e's IR-SE-50 encoder, FFHQ's 1024 px generator, Talk-to-Edit's
    five 1024 px fields and its predictor (degrees read on the StyleGAN2 rendering), dlib's identity."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from chatedit.tools.stylegan2 import talk_to_edit as tte
    from chatedit.tools.stylegan2.generator import Generator
    from chatedit.tools.wplus.adapter import WPlusAttnProcessor, WProjection, processor_layout
    from chatedit.tools.wplus.backend import WPlusBackend
    from chatedit.tools.wplus.e4e import E4EEncoder
    from chatedit.tools.wplus.loading import E4E, install

    unet, vae, text_encoder, tokenizer, dtype = sd15_modules(device)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=EulerDiscreteScheduler(**SD15_BETAS), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)  # as load_text2image
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device) if dtype == torch.float32 else pipe.to(device, dtype)
    processors = {name: WPlusAttnProcessor(inner, cross) for name, inner, cross in processor_layout(unet).values()}
    projection = WProjection()
    adapter = install(unet, projection, processors)
    encoder = E4EEncoder().eval().requires_grad_(False)
    e4e = E4E(encoder, torch.zeros(encoder.rows, encoder.style_dim), None)
    generator = Generator(1024, 512, 8, channel_multiplier=2).eval().requires_grad_(False)
    fields = [tte.FieldNetwork() for _ in range(5)]
    predictor = tte.AttributePredictor().eval()
    backend = WPlusBackend(pipe, adapter, e4e, fields, generator=generator, predictor=predictor, steps=steps)
    return backend, parameters(unet, vae, text_encoder, projection, *processors.values(), encoder, generator,
                               *fields, predictor)


def bench_wplus(device: torch.device, repeats: int, steps: int, progress: bool) -> dict:
    started = time.perf_counter()
    backend, params = wplus_backend(device, steps)
    built_s = time.perf_counter() - started
    size = backend.resolution
    photo = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    substeps = backend.capabilities.substeps
    a = backend.attributes.index("smiling")
    latent = backend.encode(photo)
    image = backend.generate(latent)
    nudge = [0.0]

    def moved(code: torch.Tensor) -> torch.Tensor:  # a code never drawn before: drawings are cached by code
        nudge[0] += 1e-3
        code = code.clone()
        code[0, 0, 0] += nudge[0]
        return code

    def one_degree():
        code = latent
        for _ in range(substeps):
            code = moved(code + backend.step("field", a, code) / substeps)
            frame = backend.generate(code)
            backend.predict(frame)
        backend.identity(frame)

    w_plus = latent[:, :backend.n_latent]
    code = torch.randn(1, 4, size // 8, size // 8, device=device, dtype=backend.pipe.vae.dtype)
    stages = {
        "inversion (e4e, one pass)": lambda: backend.encode(photo),
        f"SD pass with the W+ tokens ({steps} steps)": lambda: backend.generate(moved(latent)),
        "VAE decode (each pass's last stage)": lambda: backend._decode(code),
        f"StyleGAN2 rendering ({backend.generator.size} px)": lambda: backend.render(w_plus),
        "read degrees (rendering + predictor)": lambda: backend.predict(image),
        "read identity (dlib)": lambda: backend.identity(image),
        "field step": lambda: backend.step("field", a, latent),
        f"one-degree edit ({substeps} passes + reads + identity)": one_degree,
    }
    timings = {}
    for name, call in stages.items():
        _say(progress, name)
        timings[name] = timed(call, device, repeats)
    one_pass = timings[f"SD pass with the W+ tokens ({steps} steps)"]["ms"]
    decode = timings["VAE decode (each pass's last stage)"]["ms"]
    per_step = max(one_pass - decode, 0) / steps
    default = 30  # the backend's default --steps
    pass_s = (decode + per_step * default) / 1000
    reads = (timings["read degrees (rendering + predictor)"]["ms"] + timings["field step"]["ms"]) / 1000
    return {"resolution": size, "parameters_m": params, "build_s": round(built_s, 1), "steps": steps,
            "timings": timings, "identity_model": "dlib" if backend.identity(image) is not None else None,
            "denoising_step_ms": round(per_step, 1),
            "estimates": {f"SD pass with the W+ tokens ({default} steps, the default)": round(pass_s, 1),
                          f"one-degree edit ({default} steps)": round(substeps * (pass_s + reads), 1)}}


# --------------------------------------------------------------------------- run


def peak_memory(device: torch.device) -> dict:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"peak_rss_mb": round(rss_mb)}
    if device.type == "cuda":
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def run(backend: str, resolution: int | None = None, steps: int = 30, inversion_steps: int = 200,
        repeats: int = 3, device: str | None = None, progress: bool = False) -> dict:
    """Times one backend at its published size (see the module doc); returns the figures."""
    if backend not in BACKENDS:
        raise ValueError(f"bench speed times {' or '.join(BACKENDS)}, not {backend!r}")
    if repeats < 1 or steps < 1 or inversion_steps < 1:
        raise ValueError(f"--repeats, --steps and --inversion-steps must be at least 1, "
                         f"got {repeats}, {steps} and {inversion_steps}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    load = os.getloadavg()[0]  # other work on the machine slows every figure: both loads are reported
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if backend == "stylegan2":
            figures = bench_stylegan2(resolution or 1024, device, repeats, inversion_steps, progress)
        else:
            if resolution not in (None, 512):
                raise ValueError(f"SD 1.5 draws 512 px; --resolution {resolution} is not its published size")
            bench = bench_diffusion if backend == "diffusion" else bench_wplus
            figures = bench(device, repeats, steps, progress)
    return {"backend": backend, "device": _device_name(device), "threads": torch.get_num_threads(),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "torch": torch.__version__, "python": platform.python_version(), "weights": "random (published sizes)",
            **figures, **peak_memory(device)}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def _say(progress: bool, stage: str) -> None:
    if progress:
        print(f"timing {stage} ...", file=sys.stderr, flush=True)


def markdown(result: dict) -> str:
    head = (f"**{result['backend']}** at {result['resolution']} px, {result['parameters_m']}M parameters "
            f"(random weights at the published sizes), on {result['device']} with {result['threads']} threads; "
            f"built in {result['build_s']} s")
    lines = [head, "", "| stage | median ms | min ms | max ms | runs |", "|---|---|---|---|---|"]
    for name, t in result["timings"].items():
        lines.append(f"| {name} | {t['ms']} | {t.get('min_ms', t['ms'])} | {t.get('max_ms', t['ms'])} "
                     f"| {t['repeats']} |")
    lines += ["", "| estimate (from the per-step times above) | s |", "|---|---|"]
    lines += [f"| {name} | {s} |" for name, s in result["estimates"].items()]
    memory = f"peak memory: {result['peak_rss_mb']} MB resident"
    if "cuda_peak_allocated_mb" in result:
        memory += f", {result['cuda_peak_allocated_mb']} MB CUDA allocated"
    load = f"load average (1 min) {result['load_before']} before, {result['load_after']} after"
    return "\n".join(lines + ["", f"{memory}; {load}"])


__all__ = ["BACKENDS", "diffusion_backend", "markdown", "run", "sd15_modules", "sd15_tokenizer", "stylegan2_backend",
           "wplus_backend"]
