"""Talk-to-Edit's published field, predictor and ArcFace files load into our modules.

The published files are not downloaded: the helpers below write random tensors under the key
names and shapes of Talk-to-Edit's own modules (models/archs/field_function_arch.py,
models/archs/attribute_predictor_arch.py, models/losses/arcface_loss.py), wrapped the way its
scripts save them, independently of our modules. Small widths keep the tests fast; the
published sizes are checked on the meta device.
"""

import zipfile

import numpy as np
import pytest
import torch

from chatedit.attributes import attribute_names
from chatedit.tools.stylegan2 import talk_to_edit as tte
from chatedit.tools.stylegan2.checkpoints import safe_load

HEADS = ["classifier06Bangs", "classifier16Eyeglasses", "classifier25No_Beard", "classifier32Smiling",
         "classifier40Young"]


# ----------------------------------------------------------------- their layouts, as key → shape


def _bn(prefix, c, one_d=False):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def field_layout(num_layer=8, dim=512, hidden=512):
    dims = [dim] + [hidden] * (num_layer - 1) + [dim]
    out = {}
    for i in range(num_layer):
        out[f"field.{i}.Linear.weight"] = (dims[i + 1], dims[i])
        out[f"field.{i}.Linear.bias"] = (dims[i + 1],)
    return out


def predictor_layout(blocks=(3, 4, 6, 3), width=64, stem=512, head=256, degrees=6):
    out = {"conv1.weight": (width, 3, 7, 7), **_bn("bn1", width)}
    cin = width
    for s, n in enumerate(blocks):
        planes = width * 2 ** s
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            out[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            out.update(_bn(f"{p}.bn1", planes))
            out[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            out.update(_bn(f"{p}.bn2", planes))
            out[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            out.update(_bn(f"{p}.bn3", planes * 4))
            if b == 0:
                out[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                out.update(_bn(f"{p}.downsample.1", planes * 4))
            cin = planes * 4
    out.update({"stem.fc.weight": (stem, cin), "stem.fc.bias": (stem,), **_bn("stem.bn", stem)})
    for h in HEADS:
        out.update({f"{h}.0.fc.weight": (head, stem), f"{h}.0.fc.bias": (head,), **_bn(f"{h}.0.bn", head),
                    f"{h}.1.weight": (degrees, head), f"{h}.1.bias": (degrees,)})
    return out


def arcface_layout(widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), embed=512):
    out = {"conv1.weight": (widths[0], 1, 3, 3), **_bn("bn1", widths[0]), "prelu.weight": (1,)}
    cin = widths[0]
    for s, (planes, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            p = f"layer{s + 1}.{b}"
            out.update(_bn(f"{p}.bn0", cin))
            out[f"{p}.conv1.weight"] = (cin, cin, 3, 3)
            out.update(_bn(f"{p}.bn1", cin))
            out[f"{p}.prelu.weight"] = (1,)
            out[f"{p}.conv2.weight"] = (planes, cin, 3, 3)
            out.update(_bn(f"{p}.bn2", planes))
            if b == 0 and s > 0:
                out[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                out.update(_bn(f"{p}.downsample.1", planes))
            cin = planes
    out.update({**_bn("bn4", cin), "fc5.weight": (embed, cin * 8 * 8), "fc5.bias": (embed,), **_bn("bn5", embed)})
    return out


def random_state(layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


TINY_PREDICTOR = dict(blocks=(1, 1, 1, 1), width=4, stem=16, head=8)
TINY_ARCFACE = dict(widths=(4, 8, 8, 8), blocks=(2, 2, 2, 2), embed=16)


def tiny_predictor_config():
    c = TINY_PREDICTOR
    return dict(blocks=c["blocks"], width=c["width"], stem_dim=c["stem"], head_dim=c["head"])


def tiny_arcface_config():
    c = TINY_ARCFACE
    return dict(widths=c["widths"], blocks=c["blocks"], embed_dim=c["embed"])


# ----------------------------------------------------------------- published sizes


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_default_modules_have_the_published_layouts():
    with torch.device("meta"):
        assert _shapes(tte.FieldNetwork()) == field_layout()
        assert _shapes(tte.AttributePredictor()) == predictor_layout()
        assert _shapes(tte.ArcFaceResNet18()) == arcface_layout()


# ----------------------------------------------------------------- loading as their scripts save


def test_field_saved_as_a_bare_state_dict_loads_and_runs(tmp_path):
    # BaseModel.save_network: torch.save(net.state_dict(), path); published size, it is small
    path = tmp_path / "No_Beard.pth"
    torch.save(random_state(field_layout()), path)
    field = tte.load_field(path)
    out = field(torch.randn(3, 512))
    assert out.shape == (3, 512) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in field.parameters()) and not field.training


@pytest.mark.parametrize("wrapper", ["state_dict", "params"])
def test_wrapped_and_dataparallel_checkpoints_load(tmp_path, wrapper):
    state = {f"module.{k}": v for k, v in random_state(field_layout(3, 8, 6)).items()}
    torch.save({wrapper: state, "epoch": 3}, tmp_path / "f.pth")
    field = tte.load_field(tmp_path / "f.pth", num_layers=3, latent_dim=8, hidden_dim=6)
    assert field(torch.randn(2, 8)).shape == (2, 8)


@pytest.mark.parametrize("best", [91.5, np.float64(91.5), np.float32(0.9), torch.tensor(91.5)],
                         ids=["float", "numpy-float64", "numpy-float32", "tensor"])
def test_bookkeeping_numbers_of_any_kind_beside_the_weights_load(tmp_path, best):
    # an accuracy saved as a numpy number must not make the safe loader refuse the file
    path = tmp_path / "eval_predictor.pth.tar"
    torch.save({"epoch": 20, "state_dict": random_state(predictor_layout(**TINY_PREDICTOR)), "best_prec1": best}, path)
    assert tte.load_predictor(path, **tiny_predictor_config()) is not None


def test_predictor_saved_as_a_training_checkpoint_loads_and_runs(tmp_path):
    # face-attribute-prediction's save_checkpoint: a dict with "state_dict" beside the run's bookkeeping
    path = tmp_path / "predictor_128.pth.tar"
    state = random_state(predictor_layout(**TINY_PREDICTOR))
    torch.save({"epoch": 20, "arch": "resnet50", "state_dict": state, "best_prec1": 91.5,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}}, path)
    predictor = tte.load_predictor(path, **tiny_predictor_config())
    image = torch.rand(2, 3, 256, 256)
    x = tte.predictor_input(image)
    assert x.shape == (2, 3, 128, 128)
    logits = predictor(x)
    assert logits.shape == (2, 5, 6)
    degrees = tte.read_degrees(logits)
    assert degrees.shape == (2, 5) and degrees.dtype == torch.long
    assert int(degrees.min()) >= 0 and int(degrees.max()) <= 5


def test_arcface_saved_from_dataparallel_loads_and_runs(tmp_path):
    # arcface-pytorch saves DataParallel(model).state_dict(): every key starts with "module."
    path = tmp_path / "arcface_resnet18_110.pth"
    torch.save({f"module.{k}": v for k, v in random_state(arcface_layout(**TINY_ARCFACE)).items()}, path)
    arcface = tte.load_arcface(path, **tiny_arcface_config())
    x = tte.arcface_input(torch.rand(2, 3, 256, 256))
    assert x.shape == (2, 1, 128, 128) and x.min() >= -1 and x.max() <= 1
    embedding = arcface(x)
    assert embedding.shape == (2, 16) and torch.isfinite(embedding).all()
    with pytest.raises(ValueError, match="arcface_input"):
        arcface(torch.rand(2, 3, 128, 128))


# ----------------------------------------------------------------- degrees


def _one_hot_logits(their_degrees):
    """(1, 5, 6) logits whose argmax per head (their order) is ``their_degrees``."""
    logits = torch.zeros(1, 5, 6)
    for head, degree in enumerate(their_degrees):
        logits[0, head, degree] = 10.0
    return logits


def test_heads_map_onto_our_attributes_by_name():
    assert [a.head for a in tte.ATTRIBUTES] == HEADS
    assert {a.ours for a in tte.ATTRIBUTES} == set(attribute_names())
    # Bangs 1, Eyeglasses 2, No_Beard 3, Smiling 4, Young 0
    got = dict(zip(attribute_names(), tte.read_degrees(_one_hot_logits([1, 2, 3, 4, 0]))[0].tolist()))
    assert got == {"bangs": 1, "eyeglasses": 2, "beard": 3, "smiling": 4, "age": 0}


def test_no_beard_and_young_degrees_already_run_our_way():
    # CelebA-Dialog: No_Beard 0 "doesn't have any beard" … 5 "very long beard"; Young 0 "a young
    # kid" … 5 "in his eighties" (language/templates/attr_wise_caption_templates.json)
    beard, age = attribute_names().index("beard"), attribute_names().index("age")
    full_beard_old = tte.read_degrees(_one_hot_logits([0, 0, 5, 0, 5]))[0]
    assert full_beard_old[beard] == 5 and full_beard_old[age] == 5
    shaven_child = tte.read_degrees(_one_hot_logits([0, 0, 0, 0, 0]))[0]
    assert shaven_child[beard] == 0 and shaven_child[age] == 0
    assert tte.attribute("beard").theirs == "No_Beard" and tte.attribute("beard").field_file == "No_Beard.pth"


def test_their_list_output_reads_like_the_stacked_one():
    logits = torch.randn(4, 5, 6)
    assert torch.equal(tte.read_degrees(list(logits.unbind(1))), tte.read_degrees(logits))
    with pytest.raises(ValueError, match=r"\(B, 5, 6\)"):
        tte.read_degrees(torch.randn(4, 4, 6))


# ----------------------------------------------------------------- the edit step


def test_field_step_moves_w_and_only_the_replaced_rows():
    torch.manual_seed(0)
    field = tte.FieldNetwork(num_layers=3, latent_dim=8, hidden_dim=8).eval()
    style_mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.2), torch.nn.Linear(8, 8))
    w = torch.randn(2, 8)
    w_plus = w[:, None].repeat(1, 12, 1)
    with torch.no_grad():
        w_up, plus_up = tte.field_step(field, style_mlp, w, w_plus, replaced_layers=8)
        delta = style_mlp(field(w)) - style_mlp(torch.zeros(2, 8))
        w_down, plus_down = tte.field_step(field, style_mlp, w, w_plus, replaced_layers=8, alpha=-1.0)
    assert torch.allclose(w_up, w + delta) and torch.allclose(w_down, w - delta)
    assert torch.allclose(plus_up[:, :8], (w + delta)[:, None].expand(2, 8, 8))
    assert torch.equal(plus_up[:, 8:], w_plus[:, 8:]) and torch.equal(w_plus, w[:, None].repeat(1, 12, 1))
    with pytest.raises(ValueError, match="replaced_layers"):
        tte.field_step(field, style_mlp, w, w_plus, replaced_layers=13)


# ----------------------------------------------------------------- failures


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="Bangs.pth"):
        tte.load_field(tmp_path / "Bangs.pth")


def test_non_checkpoint_file_names_the_path(tmp_path):
    path = tmp_path / "predictor_128.pth.tar"
    path.write_text("<html>Google Drive: quota exceeded</html>\n")
    with pytest.raises(tte.CheckpointError, match="predictor_128.pth.tar.*not a PyTorch checkpoint"):
        tte.load_predictor(path)
    torch.save({"epoch": 1, "note": "no weights here"}, path)
    with pytest.raises(tte.CheckpointError, match="holds no state dict"):
        tte.load_predictor(path)


def test_missing_key_names_the_file_and_the_key(tmp_path):
    state = random_state(predictor_layout(**TINY_PREDICTOR))
    del state["classifier25No_Beard.1.weight"]
    torch.save({"state_dict": state}, tmp_path / "p.pth.tar")
    with pytest.raises(tte.CheckpointError, match=r"p\.pth\.tar is missing key 'classifier25No_Beard\.1\.weight'"):
        tte.load_predictor(tmp_path / "p.pth.tar", **tiny_predictor_config())


def test_shape_mismatch_names_the_file_the_key_and_both_shapes(tmp_path):
    # a 4-layer field (their default) where the published 8-layer one is expected … and a narrower one
    torch.save(random_state(field_layout(8, 512, 256)), tmp_path / "Smiling.pth")
    with pytest.raises(tte.CheckpointError, match=r"Smiling\.pth: 'field\.0\.Linear\.weight' has shape "
                                                  r"\(256, 512\), but FieldNetwork\(.*\) needs \(512, 512\)"):
        tte.load_field(tmp_path / "Smiling.pth")
    torch.save(random_state(field_layout(4)), tmp_path / "Young.pth")
    with pytest.raises(tte.CheckpointError, match=r"Young\.pth is missing key 'field\.4\.Linear\.weight'"):
        tte.load_field(tmp_path / "Young.pth")


def test_unexpected_key_is_refused(tmp_path):
    # an ArcFace saved with squeeze-excitation blocks is not the use_se=False model Talk-to-Edit loads
    state = random_state(arcface_layout(**TINY_ARCFACE))
    state["layer1.0.se.fc.0.weight"] = torch.zeros(1, 4)
    torch.save(state, tmp_path / "a.pth")
    with pytest.raises(tte.CheckpointError, match=r"a\.pth has unexpected key 'layer1\.0\.se\.fc\.0\.weight'"):
        tte.load_arcface(tmp_path / "a.pth", **tiny_arcface_config())


class Arbitrary:
    """An object no allow-list names: unpickling it could run anything its class does."""


def test_pickled_objects_are_not_loaded(tmp_path):
    torch.save({"state_dict": random_state(field_layout(3, 8, 6)), "extra": Arbitrary()}, tmp_path / "x.pth")
    with pytest.raises(tte.CheckpointError, match="weights_only"):
        tte.load_field(tmp_path / "x.pth", num_layers=3, latent_dim=8, hidden_dim=6)


def test_numpy_arrays_of_numbers_beside_the_weights_load(tmp_path):
    # per-attribute accuracies as a numpy array, a best accuracy as a 0-d array: bookkeeping, not code
    path = tmp_path / "predictor_128.pth.tar"
    accuracies, best = np.array([91.5, 97.2, 88.0, 90.1, 85.3], dtype=np.float32), np.array(91.5)
    torch.save({"state_dict": random_state(predictor_layout(**TINY_PREDICTOR)), "accuracies": accuracies,
                "best_prec1": best, "epochs": np.arange(3), "ok": np.array([True, False])}, path)
    assert tte.load_predictor(path, **tiny_predictor_config()) is not None
    saved = safe_load(path)
    assert np.array_equal(saved["accuracies"], accuracies) and saved["accuracies"].dtype == np.float32
    assert saved["best_prec1"].shape == () and float(saved["best_prec1"]) == 91.5


def test_numpy_arrays_written_by_numpy_1_load(tmp_path):
    # numpy 1 pickles its reconstruction functions under numpy.core, numpy 2 under numpy._core
    path = tmp_path / "new.pth"
    torch.save({"state_dict": random_state(field_layout(3, 8, 6)), "best": np.array([0.5, 0.25]),
                "loss": np.float64(0.1)}, path)
    old = tmp_path / "old.pth"
    with zipfile.ZipFile(path) as new, zipfile.ZipFile(old, "w") as out:
        for name in new.namelist():
            data = new.read(name)
            out.writestr(name, data.replace(b"numpy._core.", b"numpy.core.") if name.endswith("data.pkl") else data)
    with zipfile.ZipFile(old) as written:
        assert b"numpy.core.multiarray" in written.read(next(n for n in written.namelist() if n.endswith("data.pkl")))
    assert np.array_equal(safe_load(old)["best"], [0.5, 0.25])
    assert tte.load_field(old, num_layers=3, latent_dim=8, hidden_dim=6) is not None


@pytest.mark.parametrize("extra", [np.array([1, "rm -rf"], dtype=object), np.array(["a", "b"]),
                                   np.zeros(2, dtype=[("a", "f4")])], ids=["object", "string", "structured"])
def test_numpy_arrays_of_anything_but_numbers_are_refused(tmp_path, extra):
    torch.save({"state_dict": random_state(field_layout(3, 8, 6)), "extra": extra}, tmp_path / "x.pth")
    with pytest.raises(tte.CheckpointError, match=r"x\.pth holds an object of type numpy\.dtypes\.\w+DType"):
        tte.load_field(tmp_path / "x.pth", num_layers=3, latent_dim=8, hidden_dim=6)
