"""dlib's face recognition ResNet run in PyTorch (chatedit.dlib_resnet), against dlib's own forward pass.

The format and architecture tests need nothing; the rest read the real ``.dat`` from ``.[faces]`` and
photos from ``.[test]`` (scikit-image's astronaut and LFW crops, matplotlib's Grace Hopper), and skip
without them, except in CI (``CI=true``), where the extra is installed and a skip would hide a broken install.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from needs import need_faces
from PIL import Image

from chatedit import dlib_resnet, faces
from chatedit.dlib_resnet import DlibFormatError, FaceResNet, ResNetConfig

TOLERANCE = 1e-4  # max abs difference from dlib's embedding; measured 4e-7


# --------------------------------------------------------------------------- without the models


def test_dlibs_integers_floats_strings_and_bools_decode_as_dlib_writes_them():
    data = (b"\x01\x02" b"\x81\x05" b"\x02\x80\x12" b"\x01\x00"  # 2, -5, 4736, 0
            b"\x03b\x90\xf5\x81\x11"  # the mean red of dlib's input layer: 16093282 · 2**-17
            b"\x01\x00\x02\x00\x7d"  # mantissa 0, exponent 32000: +inf
            b"\x01\x05con_4" b"1")  # a string is its length, then its bytes
    s = dlib_resnet._Stream(data, Path("numbers.dat"))
    assert [s.int(), s.int(), s.int(), s.int()] == [2, -5, 4736, 0]
    assert s.float() == np.float32(122.782) and s.float() == float("inf")
    assert s.string() == "con_4" and s.bool() is True and s.at == len(data)


def test_a_byte_that_is_not_an_integer_is_refused_with_where_it_is():
    s = dlib_resnet._Stream(b"\x01\x07\x30", Path("bad.dat"))
    s.int()
    with pytest.raises(DlibFormatError, match=r"bad\.dat, byte 2: 0x30 is not an integer's control byte"):
        s.int()


def test_add_prev_pads_the_smaller_input_with_zeros_at_its_end():
    small = torch.ones(1, 2, 3, 3)  # a stride-2 block's convolution: fewer rows and columns
    large = torch.full((1, 4, 4, 4), 2.0)  # its pooled shortcut
    total = dlib_resnet._add_padded(large, small)
    assert total.shape == (1, 4, 4, 4)
    assert (total[:, :2, :3, :3] == 3).all() and (total[:, 2:] == 2).all() and (total[:, :, 3] == 2).all()


def test_the_network_has_dlibs_shapes_and_refuses_other_chips():
    torch.manual_seed(0)
    net = FaceResNet(ResNetConfig()).eval()
    chips = torch.randint(0, 256, (2, 150, 150, 3), dtype=torch.uint8)
    with torch.inference_mode():
        out = net(chips)
        assert out.shape == (2, 128) and torch.allclose(out[1], net(chips[1:])[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 150, 150, 3\) RGB but are \(1, 3, 150, 150\)"):
        net(torch.zeros(1, 3, 150, 150, dtype=torch.uint8))


# --------------------------------------------------------------------------- with dlib's file




@pytest.fixture(scope="module")
def model_file() -> Path:
    need_faces()
    return faces._models_folder() / faces.RECOGNIZER_FILE


@pytest.fixture(scope="module")
def photos(model_file) -> dict[str, tuple[Image.Image, faces.Face]]:
    """The astronaut and Grace Hopper with their detected faces, five LFW crops enlarged to 100 px
    with the whole crop as the face (too small to detect)."""
    skimage = pytest.importorskip("skimage", reason="the photos come with scikit-image (pip install -e \".[test]\")")
    lfw = pytest.importorskip("skimage.data", reason="the LFW crops come with scikit-image").lfw_subset()
    matplotlib = pytest.importorskip("matplotlib", reason="Grace Hopper comes with matplotlib (\".[test]\")")
    found = {}
    for name, path in {"astronaut": Path(skimage.__file__).parent / "data" / "astronaut.png",
                       "grace_hopper": Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
                       }.items():
        picture = Image.open(path).convert("RGB")
        found[name] = (picture, faces.detect(picture)[0])
    for i, crop in enumerate(lfw[:100:20]):  # (25, 25) greyscale in [0, 1]
        picture = Image.fromarray((crop * 255).round().astype(np.uint8)).convert("RGB").resize((100, 100), Image.BICUBIC)
        found[f"lfw{20 * i}"] = (picture, faces.face_in_box(picture))
    return found


def _dlib_embedding(model_file: Path, picture: Image.Image, face: faces.Face) -> np.ndarray:
    """dlib's own compute_face_descriptor, on the photo and the landmarks."""
    vector = faces._dlib_recognizer(model_file).compute_face_descriptor(faces._rgb(picture), faces._shape(face))
    return np.asarray(vector, dtype=np.float32)


def test_identity_runs_in_pytorch_and_equals_dlibs_embedding(model_file, photos):
    assert faces.identity_runtime() == "PyTorch"
    errors = {}
    for name, (picture, face) in photos.items():
        ours, dlibs = faces.identity(picture, face), _dlib_embedding(model_file, picture, face)
        assert ours.shape == (128,) and ours.dtype == np.float32
        errors[name] = float(np.abs(ours - dlibs).max())
    print("max abs difference from dlib's embedding:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= TOLERANCE, errors


def test_a_file_pytorch_cannot_read_falls_back_to_dlib_with_a_warning(model_file, photos, monkeypatch, caplog):
    def refuse(path):
        raise DlibFormatError(f"{path}, byte 0: a test's refusal")

    monkeypatch.setattr(dlib_resnet, "load", refuse)
    monkeypatch.setattr(faces, "_models", functools.lru_cache(maxsize=1)(faces._models.__wrapped__))
    with caplog.at_level(logging.WARNING, logger="chatedit.faces"):
        assert faces.identity_runtime() == "dlib"
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "falls back to dlib" in record.getMessage() and "a test's refusal" in record.getMessage()
    picture, face = photos["astronaut"]
    assert np.array_equal(faces.identity(picture, face), _dlib_embedding(model_file, picture, face))


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:len(data) // 2], r"the file ends inside a tensor"),
    (lambda data: data.replace(b"con_4", b"con_9", 1), r"byte \d+: found 'con_9' where 'con_4' or 'con_5'"),
    (lambda data: data + b"\x00", r"1 bytes are left after the network"),
])
def test_a_damaged_file_is_refused_saying_what_was_found_where(model_file, tmp_path, damage, message):
    path = tmp_path / "damaged.dat"
    path.write_bytes(damage(model_file.read_bytes()))
    with pytest.raises(DlibFormatError, match=message):
        dlib_resnet.read(path)
