"""Every model saves and loads with its own config, strictly, and fails loudly otherwise."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from chatedit.tools.builtin.loading import load_model, save_model
from chatedit.tools.builtin.models import (AttributePredictor, DegreeOffsets, Encoder, Generator, IdentityEncoder,
                                           LinearDirections, identity_similarity)

TINY = [
    lambda: Encoder(w_dim=8, channels=(8, 8, 16, 16), hidden=16),
    lambda: Generator(w_dim=8, channels=(16, 16, 8, 8, 8)),
    lambda: AttributePredictor(num_attributes=5, channels=(8, 16, 16)),
    lambda: AttributePredictor(num_attributes=3, channels=(8, 8, 16, 16), patch=2, res_blocks=False),
    lambda: IdentityEncoder(embed_dim=8, channels=(8, 16, 16)),
]


@pytest.mark.parametrize("make", TINY)
def test_round_trip_rebuilds_the_same_function(make, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    x = torch.rand(2, 8) if isinstance(model, Generator) else torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    # weights are stored in float16: outputs agree to that precision
    assert torch.allclose(expected, got, atol=2e-2, rtol=1e-2)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_shapes():
    x = torch.rand(3, 3, 128, 128)
    assert Encoder(w_dim=8, channels=(8, 8, 16, 16), hidden=16)(x).shape == (3, 8)
    assert Generator(w_dim=8, channels=(16, 16, 8, 8, 8))(torch.rand(3, 8)).shape == (3, 3, 128, 128)
    assert AttributePredictor(num_attributes=5, channels=(8, 16, 16))(x).shape == (3, 5, 6)
    assert AttributePredictor(num_attributes=7, channels=(8, 16, 16))(x).shape == (3, 7, 6)
    z = IdentityEncoder(embed_dim=8, channels=(8, 16, 16))(x)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.all((identity_similarity(z, z) - 1).abs() < 1e-5)


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="chatedit train builtin"):
        load_model(tmp_path / "nope.safetensors")


def test_tampered_file_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(Encoder(w_dim=8, channels=(8, 8, 16, 16), hidden=16), path)
    state = load_file(str(path))
    state.pop(next(iter(state)))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    save_file(state, str(path), metadata=meta)
    with pytest.raises(ValueError, match="does not match"):
        load_model(path)


def test_models_sized_by_the_attributes_take_the_count_from_their_caller():
    """No default vocabulary size: the trainer passes the yaml's, the loader the file's."""
    for cls in (AttributePredictor, LinearDirections, DegreeOffsets):
        with pytest.raises(TypeError, match="num_attributes"):
            cls()


def test_file_without_metadata_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not a ChatEdit model"):
        load_model(path)
