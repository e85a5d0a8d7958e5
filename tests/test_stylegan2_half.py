"""Half precision for StyleGAN2 drawing: off on a CPU, refused when forced there, and float16 arithmetic
that stays finite where the plain formula breaks. The CUDA path itself runs only where there is a GPU."""

import pytest
import torch
import torch.nn.functional as F

from chatedit.tools.stylegan2.backend import StyleGAN2Backend, resolve_half
from chatedit.tools.stylegan2.generator import ModulatedConv2d, load_generator, to_image01

from test_stylegan2_backend import load, weights  # noqa: F401  (tiny random Talk-to-Edit files, a fixture)
from test_stylegan2_generator import TINY, tiny_state_dict


def test_half_is_on_for_cuda_off_for_a_cpu_and_refused_on_a_cpu():
    assert resolve_half(None, "cpu") is False and resolve_half(None, torch.device("cuda", 1)) is True
    assert resolve_half(False, "cuda") is False and resolve_half(True, "cuda:0") is True
    assert resolve_half(False, "cpu") is False
    with pytest.raises(ValueError, match="CUDA device only.*cpu"):
        resolve_half(True, "cpu")


def test_the_backend_option_reaches_the_backend_and_draws_in_float32_on_a_cpu(weights):  # noqa: F811
    backend = load(weights)
    assert backend.half is False
    image = backend.generate(backend.sample(1))
    assert image.dtype == torch.float32
    assert load(weights, half=False).half is False
    with pytest.raises(ValueError, match="half precision"):
        load(weights, half=True)


def test_half_is_a_stylegan2_option_on_the_command_line_and_in_build_agent(capsys):
    from chatedit import cli
    from chatedit.agent import build_agent

    args = cli.build_parser().parse_args(["serve", "--backend", "stylegan2", "--no-half"])
    assert cli._backend_options(args) == {"half": False}
    assert cli._backend_options(cli.build_parser().parse_args(["serve"])) == {}  # auto: not passed at all
    with pytest.raises(ValueError, match="--half: an option of --backend stylegan2, not of --backend builtin"):
        build_agent("builtin", half=True)
    with pytest.raises(ValueError, match="--model: an option of --backend diffusion or wplus, not of --backend stylegan2"):
        build_agent("stylegan2", weights="x", model="sd")
    assert cli.main(["bench", "edit", "--half"]) == 1
    assert "--half: an option of --backend stylegan2" in capsys.readouterr().err


def _large_conv(upsample: bool) -> ModulatedConv2d:
    """A demodulated conv whose weights and styles are far outside float16's comfort: weight² and
    style² overflow float16 (65504), so the plain formula's sum is inf and its rsqrt 0."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, 16, upsample=upsample)
    with torch.no_grad():
        conv.weight.mul_(3000.0)
        conv.modulation.bias.fill_(300.0)
    return conv


@pytest.mark.parametrize("upsample", [False, True])
def test_demodulation_stays_finite_and_right_in_float16(upsample):
    conv = _large_conv(upsample)
    x, w = torch.randn(2, 64, 8, 8), torch.randn(2, 16)
    exact = conv(x, w)  # float32: rosinality's arithmetic
    half = _large_conv(upsample).half()
    try:
        out = half(x.half(), w.half())  # float16 tensors on the CPU: the reduced-precision branch
    except RuntimeError as error:  # an older PyTorch without float16 conv on the CPU
        pytest.skip(f"this PyTorch has no float16 conv on the CPU: {error}")
    # the hazard is real: the plain formula in float16 collapses the demodulation to 0 here
    style, weight = half.modulation(w.half()), half.weight[0] * half.scale
    plain = torch.rsqrt(style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).T + 1e-8)
    assert (plain == 0).any() or not plain.isfinite().all()
    assert out.dtype == torch.float16 and out.isfinite().all()
    assert (out.float() - exact).abs().max() < 0.01 * exact.abs().max()


def test_a_generator_under_float16_autocast_draws_what_float32_draws(tmp_path):
    """The CUDA code path (autocast) run on the CPU: the same image within float16's error, even from
    a code far from the mean; in float32 nothing changes (the drawing is bit-for-bit repeatable)."""
    path = tmp_path / "g.pt"
    torch.save({"g_ema": tiny_state_dict()}, path)
    g = load_generator(path)
    w_plus = g.to_w_plus(g.mapping(torch.randn(2, TINY["style_dim"], generator=torch.Generator().manual_seed(0))))
    for scale in (1.0, 50.0):
        exact = g.synthesis(w_plus * scale)
        assert torch.equal(exact, g.synthesis(w_plus * scale))
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                half = g.synthesis(w_plus * scale)
        except RuntimeError as error:
            pytest.skip(f"this PyTorch has no float16 autocast on the CPU: {error}")
        assert half.isfinite().all()
        assert (half.float() - exact).abs().max() < 0.01 * exact.abs().max()


def test_float32_arithmetic_is_exactly_as_before():
    """On a CPU (float32, no autocast) a modulated conv computes rosinality's formula, bit for bit."""
    torch.manual_seed(1)
    conv = ModulatedConv2d(8, 4, 3, 16)
    x, w = torch.randn(2, 8, 6, 6), torch.randn(2, 16)
    style, weight = conv.modulation(w), conv.weight[0] * conv.scale
    demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).T + 1e-8)
    plain = F.conv2d(x * style.view(2, -1, 1, 1), weight, padding=1) * demod.view(2, -1, 1, 1)
    assert torch.equal(conv(x, w), plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: half precision is for GPUs")
def test_on_cuda_the_backend_draws_in_half_and_reads_in_float32(weights):  # noqa: F811
    from test_stylegan2_backend import STYLE
    from test_talk_to_edit_models import tiny_arcface_config, tiny_predictor_config

    backend = StyleGAN2Backend.load(weights, device="cuda", predictor_config=tiny_predictor_config(),
                                    field_config={"num_layers": 2, "latent_dim": STYLE, "hidden_dim": 32},
                                    arcface_config=tiny_arcface_config())
    assert backend.half is True
    w = backend.sample(3)
    image = backend.generate(w)
    with torch.no_grad():
        exact = to_image01(backend.generator.synthesis(w)).clamp(0, 1)  # float32: no autocast here
    assert image.dtype == torch.float32 and image.isfinite().all()
    assert (image - exact).abs().max() < 0.02  # within a few 8-bit levels
    assert backend.predict(image).expected.dtype == torch.float32
    assert backend.identity(image).dtype == torch.float32
    seen = []
    backend.encode(image, refine_steps=11, on_progress=lambda step, frame: seen.append(frame.dtype))
    assert seen == [torch.float32, torch.float32]  # the inversion runs in float32
