"""``chatedit bench speed``: the backends at their published sizes, and the figures it prints.

The published sizes are checked on the meta device (no memory, no time): a figure timed on a
network of another size would mislead whoever plans capacity by it. The harness itself runs on a
tiny StyleGAN2 backend; the full-size runs are the command's job, not the suite's.
"""

import json

import pytest
import torch

from chatedit import bench_speed
from chatedit.cli import main
from chatedit.tools.stylegan2 import talk_to_edit as tte
from chatedit.tools.stylegan2.backend import StyleGAN2Backend
from chatedit.tools.stylegan2.generator import Generator

from test_talk_to_edit_models import tiny_arcface_config, tiny_predictor_config


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sd15_parts_have_the_published_parameter_counts():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**bench_speed.SD15_UNET)
        vae = AutoencoderKL(**bench_speed.SD15_VAE)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **bench_speed.SD15_TEXT))
    # runwayml/stable-diffusion-v1-5's unet, vae and text_encoder safetensors hold exactly these
    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)


def test_the_1024px_generator_is_ffhqs_size():
    with torch.device("meta"):
        generator = Generator(1024, 512, 8, channel_multiplier=2)
    assert count(generator) == 30_370_060 and generator.n_latent == 18  # rosinality's FFHQ 1024 px


def test_the_sd15_tokenizer_is_clips_own(tmp_path):
    tokenizer = bench_speed.sd15_tokenizer(tmp_path)
    assert len(tokenizer) == 49408
    # OpenAI CLIP's ids: start, "a", "photo", "of", "a", "smiling", "person", end
    assert tokenizer("a photo of a smiling person").input_ids == [49406, 320, 1125, 539, 320, 9200, 2533, 49407]
    assert len(tokenizer("word " * 200, truncation=True).input_ids) == 77


def tiny_stylegan2(resolution, device):
    generator = Generator(32, 16, 2, channels=[16, 16, 8, 8]).to(device).eval().requires_grad_(False)
    fields = [tte.FieldNetwork(num_layers=2, latent_dim=16, hidden_dim=32) for _ in range(5)]
    predictor = tte.AttributePredictor(**tiny_predictor_config()).eval()
    arcface = tte.ArcFaceResNet18(**tiny_arcface_config()).eval()
    backend = StyleGAN2Backend(generator, fields, predictor, arcface, pti_steps=0)
    return backend, bench_speed.parameters(generator, *fields, predictor, arcface)


def test_bench_speed_prints_each_stage_estimates_and_memory(monkeypatch, capsys):
    monkeypatch.setattr(bench_speed, "stylegan2_backend", tiny_stylegan2)
    assert main(["bench", "speed", "--backend", "stylegan2", "--resolution", "128", "--inversion-steps", "2",
                 "--repeats", "2", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    timings = result["timings"]
    assert list(timings) == ["draw a frame (generate)", "read degrees (predict)", "read identity",
                             "field step (one walk step's share)", "walk step (step + draw + read)",
                             "one-degree edit (8 walk steps + identity)", "inversion (2 optimisation steps)"]
    assert all(t["ms"] > 0 for t in timings.values())
    assert timings["walk step (step + draw + read)"]["repeats"] == 2
    assert result["estimates"]["inversion (200 steps, the backend's default)"] == pytest.approx(
        result["inversion_step_ms"] * 200 / 1000, abs=0.1)
    assert result["peak_rss_mb"] > 100 and result["weights"] == "random (published sizes)"
    assert main(["bench", "speed", "--backend", "stylegan2", "--inversion-steps", "1", "--repeats", "1",
                 "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| walk step (step + draw + read) |" in table and "peak memory:" in table and "load average" in table


def test_bench_speed_refuses_a_size_nobody_published_before_building():
    with pytest.raises(ValueError, match="512"):
        bench_speed.run("diffusion", resolution=256)
    with pytest.raises(ValueError, match="128 and 1024"):
        bench_speed.run("stylegan2", resolution=256)
    with pytest.raises(ValueError, match="at least 1"):
        bench_speed.run("stylegan2", repeats=0)


def test_bench_speed_times_the_wplus_backends_own_stages(monkeypatch, capsys, tmp_path):
    from chatedit.tools.wplus.backend import WPlusBackend
    from diffusion_fixtures import build_pipeline
    from wplus_fixtures import build_wplus_files

    model = build_pipeline(tmp_path / "sd", resolution=64)
    files = build_wplus_files(tmp_path, model)

    def tiny_wplus(device, steps):
        backend = WPlusBackend.load(files["adapter"], files["e4e"], files["weights"], model=str(model),
                                    steps=steps, device=str(device))
        return backend, 1.0

    monkeypatch.setattr(bench_speed, "wplus_backend", tiny_wplus)
    assert main(["bench", "speed", "--backend", "wplus", "--steps", "2", "--repeats", "1", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["timings"]) == [
        "inversion (e4e, one pass)", "SD pass with the W+ tokens (2 steps)", "VAE decode (each pass's last stage)",
        "StyleGAN2 rendering (32 px)", "read degrees (rendering + predictor)", "read identity (dlib)", "field step",
        "one-degree edit (2 passes + reads + identity)"]
    assert all(t["ms"] > 0 for t in result["timings"].values())
    per_pass = result["estimates"]["SD pass with the W+ tokens (30 steps, the default)"]
    assert per_pass == pytest.approx((result["timings"]["VAE decode (each pass's last stage)"]["ms"]
                                      + 30 * result["denoising_step_ms"]) / 1000, abs=0.1)
    assert result["estimates"]["one-degree edit (30 steps)"] >= 2 * per_pass - 0.1
