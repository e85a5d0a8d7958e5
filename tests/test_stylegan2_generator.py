"""The StyleGAN2 generator keeps rosinality's checkpoint layout, loads it safely, and draws deterministically."""

import argparse

import pytest
import torch

from chatedit.tools.stylegan2.generator import (
    Generator,
    fused_leaky_relu,
    load_generator,
    rosinality_channels,
    to_image01,
    upfirdn2d,
)

TINY = dict(size=32, style_dim=16, n_mlp=2, channels=[16, 16, 8, 8])  # 4, 8, 16, 32 px


def rosinality_layout(size: int, style_dim: int, n_mlp: int, widths: list[int]) -> dict[str, tuple]:
    """Key → shape of rosinality's ``Generator(size, style_dim, n_mlp).state_dict()``, in its order,
    written out from its model.py (ModulatedConv2d: weight, blur, modulation; ToRGB: bias,
    upsample, conv; Generator: style, input, conv1, to_rgb1, convs, to_rgbs, noises)."""
    keys: dict[str, tuple] = {}
    for i in range(1, n_mlp + 1):
        keys[f"style.{i}.weight"] = (style_dim, style_dim)
        keys[f"style.{i}.bias"] = (style_dim,)

    def styled_conv(prefix, cin, cout, upsample):
        keys[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        if upsample:
            keys[f"{prefix}.conv.blur.kernel"] = (4, 4)
        keys[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        keys[f"{prefix}.conv.modulation.bias"] = (cin,)
        keys[f"{prefix}.noise.weight"] = (1,)
        keys[f"{prefix}.activate.bias"] = (cout,)

    def to_rgb(prefix, cin, upsample):
        keys[f"{prefix}.bias"] = (1, 3, 1, 1)
        if upsample:
            keys[f"{prefix}.upsample.kernel"] = (4, 4)
        keys[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        keys[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        keys[f"{prefix}.conv.modulation.bias"] = (cin,)

    keys["input.input"] = (1, widths[0], 4, 4)
    styled_conv("conv1", widths[0], widths[0], upsample=False)
    to_rgb("to_rgb1", widths[0], upsample=False)
    for k, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        styled_conv(f"convs.{2 * k}", cin, cout, upsample=True)
        styled_conv(f"convs.{2 * k + 1}", cout, cout, upsample=False)
    for k, cout in enumerate(widths[1:]):
        to_rgb(f"to_rgbs.{k}", cout, upsample=True)
    for i in range(2 * (len(widths) - 1) + 1):
        res = 2 ** ((i + 5) // 2)
        keys[f"noises.noise_{i}"] = (1, 1, res, res)
    return keys


def tiny_state_dict(seed: int = 0, **config) -> dict[str, torch.Tensor]:
    """A random generator whose noise strengths and biases are non-zero, so every path shows."""
    model = Generator(**{**TINY, **config}, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_training_dict(path, state_dict, latent_avg):
    """Saved the way rosinality's train.py saves (plus the converted files' ``latent_avg``)."""
    optim = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    args = argparse.Namespace(size=32, latent=16, n_mlp=2, channel_multiplier=2, path="lmdb", ckpt=None, lr=0.002)
    torch.save({"g": state_dict, "d": {"convs.0.0.weight": torch.zeros(2)}, "g_ema": state_dict,
                "g_optim": optim.state_dict(), "d_optim": optim.state_dict(), "args": args,
                "latent_avg": latent_avg}, path)


# ---- layout -------------------------------------------------------------------------------------


def test_default_128px_multiplier_1_matches_rosinality_layout():
    model = Generator(128, channel_multiplier=1)
    widths = [512, 512, 512, 512, 256, 128]  # 4 … 128 px
    assert rosinality_channels(128, 1) == widths
    expected = rosinality_layout(128, 512, 8, widths)
    state = model.state_dict()
    assert len(expected) == 117
    assert list(state) == list(expected)  # the same keys, in the same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert model.n_latent == 12 and model.num_layers == 11
    # both blur kernels are [1, 3, 3, 1] ⊗ [1, 3, 3, 1] / 64, ×4 after a ×2 upsampling
    taps = torch.tensor([1.0, 3, 3, 1])
    assert torch.allclose(state["convs.0.conv.blur.kernel"], torch.outer(taps, taps) / 16)
    assert torch.allclose(state["to_rgbs.4.upsample.kernel"], torch.outer(taps, taps) / 16)


def test_config_f_widths():
    assert rosinality_channels(1024, 2) == [512, 512, 512, 512, 512, 256, 128, 64, 32]
    with pytest.raises(ValueError, match="2048"):
        rosinality_channels(2048)
    with pytest.raises(ValueError, match="48"):
        Generator(48, channels=[8, 8, 8, 8])
    with pytest.raises(ValueError, match="channels"):
        Generator(32, channels=[8, 8])


# ---- ops ----------------------------------------------------------------------------------------


def test_upfirdn2d_matches_its_definition():
    # direct loops: insert up-1 zeros after each sample, pad, convolve (flipped kernel), keep every down-th
    x = torch.randn(1, 2, 5, 5)
    kernel = torch.randn(4, 4)  # not symmetric, so a missing flip would show
    for up, down, pad in [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 2, (2, 1)), (2, 1, (1, 1))]:
        h = 5 * up
        z = torch.zeros(1, 2, h, h)
        z[:, :, ::up, ::up] = x
        z = torch.nn.functional.pad(z, [pad[0], pad[1], pad[0], pad[1]])
        n = z.shape[-1] - 4 + 1
        full = torch.stack([torch.stack([(z[:, :, i:i + 4, j:j + 4] * kernel.flip([0, 1])).sum((-2, -1))
                                         for j in range(n)], -1) for i in range(n)], -2)
        got = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
        assert torch.allclose(got, full[:, :, ::down, ::down], atol=1e-5), (up, down, pad)


def test_fused_leaky_relu():
    x = torch.tensor([[-1.0, 2.0]])
    out = fused_leaky_relu(x, torch.tensor([0.5, -1.0]))
    assert torch.allclose(out, torch.tensor([[-0.1, 1.0]]) * 2 ** 0.5)


# ---- loading and drawing ------------------------------------------------------------------------


def test_training_dict_loads_and_draws_the_same_image_every_time(tmp_path):
    state = tiny_state_dict()
    reference = Generator.from_state_dict(state)
    latent_avg = torch.randn(16)
    path = tmp_path / "010000.pt"
    save_training_dict(path, state, latent_avg)

    model = load_generator(path)
    assert model.config == {**TINY, "lr_mlp": 0.01}
    assert model.n_latent == 8 and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model.mean_latent(), latent_avg[None])

    w = model.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(3)))  # (2, 16)
    w_plus = model.to_w_plus(w)
    assert w_plus.shape == (2, 8, 16) and torch.equal(w_plus[:, 5], w)
    image = model.synthesis(w_plus)
    assert image.shape == (2, 3, 32, 32) and image.dtype == torch.float32
    assert torch.equal(image, model.synthesis(w_plus))  # fixed noise: identical on every call
    assert torch.equal(image, reference.synthesis(w_plus))  # and identical to the model that was saved
    assert torch.equal(image, load_generator(path).synthesis(w_plus))  # and after a reload
    assert torch.allclose(image[1:], model.synthesis(w_plus[1:]), atol=1e-5)  # samples do not mix in a batch
    # the noise maps matter (non-zero strengths), so sameness above is not trivial
    other = Generator.from_state_dict({**state, "noises.noise_6": torch.randn(1, 1, 32, 32)})
    assert not torch.allclose(image, other.synthesis(w_plus))
    shown = to_image01(image)
    assert shown.min() >= 0 and shown.max() <= 1


def test_bare_state_dict_and_inferred_widths(tmp_path):
    config = dict(size=64, style_dim=12, n_mlp=3, channels=[24, 16, 16, 8, 4])
    state = tiny_state_dict(seed=1, **config)
    path = tmp_path / "bare.pt"
    torch.save(state, path)

    model = load_generator(path, device="cpu")
    assert model.config == {**config, "lr_mlp": 0.01}
    assert model.latent_avg is None
    mean = model.mean_latent(n=256)
    assert mean.shape == (1, 12)
    assert torch.equal(mean, model.mean_latent(n=256))  # seeded: the same every call
    assert not torch.equal(mean, model.mean_latent(n=256, seed=1))
    image = model.synthesis(model.to_w_plus(mean))
    assert image.shape == (1, 3, 64, 64)


def test_gradients_reach_the_latent_not_the_weights(tmp_path):
    model = Generator.from_state_dict(tiny_state_dict())
    w_plus = model.to_w_plus(model.mean_latent(n=64)).requires_grad_(True)
    model.synthesis(w_plus).square().mean().backward()
    assert w_plus.grad is not None and w_plus.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_bad_latent_shapes_are_refused():
    model = Generator(**TINY)
    with pytest.raises(ValueError, match=r"\(B, 8, 16\).*\(2, 7, 16\)"):
        model.synthesis(torch.zeros(2, 7, 16))
    with pytest.raises(ValueError, match=r"\(B, 16\).*\(2, 15\)"):
        model.mapping(torch.zeros(2, 15))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_what_the_cpu_draws(tmp_path):
    path = tmp_path / "g.pt"
    torch.save({"g_ema": tiny_state_dict()}, path)
    cpu, cuda = load_generator(path), load_generator(path, device="cuda")
    w_plus = cpu.to_w_plus(cpu.mean_latent(n=64))
    assert torch.allclose(cuda.mean_latent(n=64).cpu(), cpu.mean_latent(n=64), atol=1e-5)
    assert torch.allclose(cuda.synthesis(w_plus.cuda()).cpu(), cpu.synthesis(w_plus), atol=1e-4)


# ---- failures name the file and the key ---------------------------------------------------------


class NotAllowed:  # any class outside the allow-list must not be unpickled
    pass


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_generator(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.pt.*not a PyTorch checkpoint"):
        load_generator(path)


def test_unsafe_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"g_ema": tiny_state_dict(), "extra": NotAllowed()}, path)
    with pytest.raises(ValueError, match="pickled.pt.*weights_only"):
        load_generator(path)


def test_not_a_generator(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "step": 3}, path)
    with pytest.raises(ValueError, match="other.pt.*g_ema"):
        load_generator(path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("convs.1.noise.weight"), "missing key 'convs.1.noise.weight'"),
    (lambda s: s.pop("input.input"), "missing key 'input.input'"),
    (lambda s: s.update({"convs.3.activate.bias": torch.zeros(5)}), r"'convs.3.activate.bias' has shape \(5,\)"),
    (lambda s: s.update({"noises.noise_2": torch.zeros(1, 1, 4, 4)}), r"'noises.noise_2' has shape"),
    (lambda s: s.update({"to_rgbs.0.conv.weight": torch.zeros(1, 3, 7, 1, 1)}),
     r"'to_rgbs.0.conv.weight' has shape \(1, 3, 7, 1, 1\)"),
    (lambda s: s.update({"style.9.weight": torch.zeros(16, 16)}), "unexpected key 'style.9.weight'"),
])
def test_broken_state_dict(tmp_path, change, message):
    state = tiny_state_dict()
    change(state)
    path = tmp_path / "broken.pt"
    save_training_dict(path, state, torch.zeros(16))
    with pytest.raises(ValueError, match=f"broken.pt.*{message}"):
        load_generator(path)


def test_wrong_latent_avg(tmp_path):
    path = tmp_path / "avg.pt"
    save_training_dict(path, tiny_state_dict(), torch.zeros(15))
    with pytest.raises(ValueError, match="avg.pt.*'latent_avg'"):
        load_generator(path)
