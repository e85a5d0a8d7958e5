"""Real-photo intake: the FFHQ crop, OpenCV's detector, and the insightface glue (with a stand-in module).

Photos are built from procedural renders whose eye and mouth positions are known exactly: a
render is enlarged, tilted and placed on a canvas, and its landmarks are moved the same way.
"""

import functools
import sys
import types

import cv2
import numpy as np
import pytest
from PIL import Image

from chatedit.tools import align
from chatedit.tools.align import FaceMarks, NoFaceFound, align_face, detect_face
from chatedit.tools.builtin.data import render_set
from chatedit.tools.builtin.renderer import landmarks

GREY = (128, 128, 128)


@pytest.fixture(scope="module")
def renders():
    faces = render_set(10, 1, seed=5)
    return [Image.fromarray(img.permute(1, 2, 0).numpy(), "RGB") for img in faces.images], landmarks(faces.portraits)


def true_points(marks, i) -> np.ndarray:
    """Eyes and mouth corners (4, 2) of render ``i`` in its 128 px pixels (the face is centred at x = 64)."""
    eye_y, mouth_y = ((marks[k][i].item() + 1) * 64 for k in ("eye_y", "mouth_y"))
    eye_dx = marks["eye_dx"][i].item() * 64  # half the eye distance; the mouth's width does not move the crop
    return np.array([[64 - eye_dx, eye_y], [64 + eye_dx, eye_y],
                     [64 - 0.4 * eye_dx, mouth_y], [64 + 0.4 * eye_dx, mouth_y]])


def photo(render: Image.Image, points: np.ndarray, scale: float, angle: float, size=(600, 600), at=None):
    """``render`` enlarged ``scale`` times and turned ``angle`` degrees anticlockwise about its middle,
    placed with its middle at ``at`` on a grey canvas; returns the photo and the moved points."""
    at = np.array(at if at is not None else (size[0] / 2, size[1] / 2))
    t = np.radians(angle)
    turn = scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # y points down
    move = at - turn @ (64, 64)  # continuous coordinates: pixel i spans [i, i + 1)
    forward = np.column_stack([turn, move + turn @ (0.5, 0.5) - 0.5])  # the same, on pixel indices
    out = cv2.warpAffine(np.asarray(render), forward, size, flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=GREY)
    return Image.fromarray(out, "RGB"), points @ turn.T + move


def marks_of(points: np.ndarray) -> FaceMarks:
    return FaceMarks(*(tuple(p) for p in points), box=(0, 0, 1, 1), score=1.0)


def psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255**2 / error))


# --------------------------------------------------------------------------- the FFHQ crop


def test_an_upright_face_is_cut_at_ffhqs_square(renders):
    images, marks = renders
    points = true_points(marks, 1)
    picture, moved = photo(images[1], points, scale=1, angle=0, size=(384, 384))
    eye_to_eye = moved[1, 0] - moved[0, 0]
    eye_to_mouth = moved[2:, 1].mean() - moved[0, 1]
    half = max(2.0 * eye_to_eye, 1.8 * eye_to_mouth)
    cx, cy = moved[:2, 0].mean(), moved[0, 1] + 0.1 * eye_to_mouth
    expected = picture.resize((128, 128), Image.BILINEAR, box=(cx - half, cy - half, cx + half, cy + half))
    assert psnr(align_face(picture, marks_of(moved), 128), expected) > 35


def test_tilted_and_enlarged_photos_of_one_face_align_alike(renders):
    images, marks = renders
    crops = []
    for scale, angle in ((1.0, 0.0), (3.0, 25.0), (2.2, -40.0), (4.5, 90.0)):
        picture, moved = photo(images[3], true_points(marks, 3), scale, angle)
        crops.append(align_face(picture, marks_of(moved), 128))
    other, moved = photo(images[4], true_points(marks, 4), 3.0, 25.0)
    stranger = align_face(other, marks_of(moved), 128)
    same = [psnr(crops[0], c) for c in crops[1:]]
    assert min(same) > 30, same  # the eyes land at the same place, level, at the same size
    assert psnr(crops[1], stranger) < min(same) - 10


@pytest.mark.parametrize("scale, angle", [(1.0, 0.0), (2.5, 35.0), (0.7, -60.0)])
def test_the_eyes_land_where_ffhq_puts_them(scale, angle):
    # a face of typical proportions (mouth further below the eyes than they are apart), drawn as
    # dots: red left eye, green right eye, blue mouth corners
    t = np.radians(angle)
    turn = 60 * scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    face = np.array([[-0.5, 0.0], [0.5, 0.0], [-0.415, 1.155], [0.415, 1.155]])  # in eye distances
    points = face @ turn.T + (500, 460)
    canvas = np.full((1000, 1000, 3), 128, np.uint8)  # holds the whole square: no mirrored dots
    for point, colour in zip(points, [(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 255)]):
        cv2.circle(canvas, tuple(int(round(v)) for v in point), int(4 * scale) + 2, colour, -1, cv2.LINE_AA)
    crop = np.asarray(align_face(Image.fromarray(canvas), marks_of(points), 128)).astype(int)
    # FFHQ's square for these proportions: half a side 1.8 × 1.155 eye distances, centred 0.1155 below the eyes
    eyes_y, mouth_y = 0.5 - 0.1155 / 4.158, 0.5 + (1.155 - 0.1155) / 4.158
    expected = 128 * np.array([[0.5 - 0.5 / 4.158, eyes_y], [0.5 + 0.5 / 4.158, eyes_y], [0.5, mouth_y]])
    assert np.allclose(align.aligned_points(128)[[0, 1]], expected[:2], atol=0.01)
    for channel, want in zip(range(3), expected):
        others = np.delete(crop, channel, -1).max(-1)
        ys, xs = np.nonzero((crop[..., channel] > 150) & (others < 100))
        assert np.abs((xs.mean() + 0.5, ys.mean() + 0.5) - want).max() < 1.5, channel


def test_a_square_leaving_the_photo_is_filled_from_the_photo_not_black(renders):
    images, marks = renders
    picture, moved = photo(images[1], true_points(marks, 1), 3.0, 30.0, size=(300, 260), at=(110, 120))
    picture = Image.eval(picture, lambda v: 40 + v * 0.8)  # nothing in the photo is darker than 40
    centre, x, y = align.ffhq_square(marks_of(moved))
    corners = np.stack([centre - x - y, centre + x + y, centre - x + y, centre + x - y])
    assert (corners.min(0) < 0).all() and (corners.max(0) > picture.size).any()  # the square does leave it
    darkest = np.asarray(picture).max(-1).min()
    crop = np.asarray(align_face(picture, marks_of(moved), 128))
    assert darkest >= 40 and crop.max(-1).min() >= darkest - 5


def test_shrinking_is_antialiased():
    # one-pixel stripes shrunk 12 times are their average grey, not stripes of another width (moiré)
    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255
    face = FaceMarks((300, 300), (500, 300), (330, 520), (470, 520), box=(200, 200, 600, 600), score=1.0)
    crop = np.asarray(align_face(Image.fromarray(stripes), face, 64), np.float64)
    assert abs(crop.mean() - 127.5) < 6 and crop.std() < 6


# --------------------------------------------------------------------------- OpenCV's cascades


# renders on which the cascades find the face and both eyes (they miss some renders, and real faces too)
@pytest.mark.parametrize("item, scale, side", [(1, 3, 600), (6, 3, 600), (1, 6, 1200), (7, 6, 1200)])
def test_opencv_finds_the_face_and_its_eyes(renders, item, scale, side):
    images, marks = renders
    picture, moved = photo(images[item], true_points(marks, item), scale, 0.0, size=(side, side))
    found = detect_face(picture)
    tolerance = 2.5 * scale  # pixels of the photo: about 2 pixels of the render
    assert np.abs(np.array([found.left_eye, found.right_eye]) - moved[:2]).max() < tolerance
    x0, y0, x1, y1 = found.box
    assert x0 < moved[0, 0] < moved[1, 0] < x1 and y0 < moved[0, 1] < y1
    assert found.mouth_left[1] > moved[0, 1] and found.mouth_left[0] < found.mouth_right[0]


@pytest.mark.parametrize("kind", ["noise", "flat"])
def test_a_picture_without_a_face_is_refused_in_a_sentence(kind):
    rng = np.random.default_rng(0)
    if kind == "noise":
        pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        pixels = np.full((480, 640, 3), 200, np.uint8)
    with pytest.raises(NoFaceFound, match="couldn't find a face"):
        detect_face(Image.fromarray(pixels))


# --------------------------------------------------------------------------- insightface, stood in for


class FakeFace(dict):
    """What insightface's ``Face`` offers us: attributes over a dict."""

    __getattr__ = dict.__getitem__


def face(box, kps, score=0.9, embedding=None):
    found = FakeFace(bbox=np.array(box, np.float32), kps=np.array(kps, np.float32), det_score=np.float32(score))
    if embedding is not None:
        found["normed_embedding"] = np.asarray(embedding, np.float32) / np.linalg.norm(embedding)
    return found


def fresh_insightface_cache(monkeypatch) -> None:
    """insightface apps made during this test are kept for this test only."""
    monkeypatch.setattr(align, "_insightface_app", functools.lru_cache(maxsize=4)(align._insightface_app.__wrapped__))


def install_fake_insightface(monkeypatch, faces: list, recognition=None) -> dict:
    """A stand-in ``insightface`` package: its ``FaceAnalysis`` records how it is built and what it is
    shown, and finds ``faces``; ``recognition`` (with ``get_feat``) is its ArcFace, if any."""
    calls = {"name": [], "allowed_modules": [], "images": [], "norm_crop": []}

    class FaceAnalysis:
        def __init__(self, name="buffalo_l", root="~/.insightface", allowed_modules=None, **kwargs):
            calls["name"].append(name)
            calls["allowed_modules"].append(allowed_modules)
            self.models = {"detection": object()} | ({"recognition": recognition} if recognition else {})

        def prepare(self, ctx_id=0, det_size=(640, 640)):
            pass

        def get(self, img):
            calls["images"].append(img)
            return list(faces)

    def norm_crop(img, landmark, image_size=112, mode="arcface"):
        calls["norm_crop"].append(np.asarray(landmark))
        return cv2.resize(img, (image_size, image_size))

    package, app = types.ModuleType("insightface"), types.ModuleType("insightface.app")
    utils, face_align = types.ModuleType("insightface.utils"), types.ModuleType("insightface.utils.face_align")
    app.FaceAnalysis, face_align.norm_crop = FaceAnalysis, norm_crop
    package.app, package.utils, utils.face_align = app, utils, face_align
    for module in (package, app, utils, face_align):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    fresh_insightface_cache(monkeypatch)
    return calls


@pytest.fixture
def fake_insightface(monkeypatch):
    faces = []
    return install_fake_insightface(monkeypatch, faces), faces


def test_insightface_reads_the_folder_given_and_the_largest_face_wins(fake_insightface, tmp_path):
    calls, faces = fake_insightface
    (tmp_path / "det_10g.onnx").write_bytes(b"")
    small = face((10, 10, 60, 60), [[20, 25], [40, 25], [30, 35], [22, 45], [38, 45]], score=0.99)
    large = face((100, 50, 300, 260), [[150, 120], [250, 124], [200, 170], [160, 210], [240, 212]], score=0.7)
    faces += [small, large]
    picture = Image.new("RGB", (320, 280), (255, 0, 0))
    found = detect_face(picture, tmp_path)
    assert found == FaceMarks((150, 120), (250, 124), (160, 210), (240, 212), (100, 50, 300, 260), pytest.approx(0.7))
    assert calls["name"] == [str(tmp_path.resolve())]  # a folder that exists: never a model name to fetch
    assert "detection" in calls["allowed_modules"][0]
    shown = calls["images"][0]
    assert shown.shape == (280, 320, 3) and shown[0, 0].tolist() == [0, 0, 255]  # BGR, as insightface reads
    detect_face(picture, tmp_path)
    assert len(calls["name"]) == 1  # created once per folder
    faces.clear()
    with pytest.raises(NoFaceFound):
        detect_face(picture, tmp_path)


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_without_insightface_models_opencv_detects(fake_insightface, tmp_path, folder):
    calls, _ = fake_insightface
    path = tmp_path / folder
    if folder == "empty":
        path.mkdir()
    with pytest.raises(NoFaceFound):  # OpenCV's answer for a flat picture
        detect_face(Image.new("RGB", (200, 200), GREY), path)
    assert calls["name"] == [] and calls["images"] == []


def test_without_the_package_opencv_detects(monkeypatch, tmp_path, renders):
    (tmp_path / "det_10g.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "insightface", None)  # import fails, as when it is not installed
    fresh_insightface_cache(monkeypatch)
    images, marks = renders
    picture, moved = photo(images[1], true_points(marks, 1), 3, 0.0)
    assert np.abs(np.array(detect_face(picture, tmp_path).left_eye) - moved[0]).max() < 8
