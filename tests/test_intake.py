"""What a request may bring in is checked and bounded before any backend work: a huge picture is
refused from its header, a large one shrunk, a camera's rotation undone, a blank picture refused;
an over-long message is refused and kept only as a short excerpt."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import time
import zlib

import pytest
import torch
from PIL import Image

from chatedit.editor import EditError, Editor
from chatedit.feedback import load_feedback
from chatedit.images import to_pil
from chatedit.intake import IntakeLimits, check_text, read_photo
from chatedit.state import DialogState
from chatedit.tools.builtin.backend import BuiltinBackend
from chatedit.tools.builtin.renderer import render, sample_portraits

FEEDBACK = load_feedback()


def blank_png(path, width: int, height: int) -> None:
    """A black one-bit PNG of any size, written row by row: a 13,000 × 13,000 one is ~20 KB and
    costs no memory to write (Pillow would build the whole picture first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), bytes(1 + (width + 7) // 8)  # filter byte, then 1 bit a pixel
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


class Spy:
    """A backend that records every picture it is handed (and finds a face in none)."""

    def __init__(self):
        self.seen: list[Image.Image] = []

    def intake(self, picture: Image.Image) -> torch.Tensor:
        self.seen.append(picture)
        return torch.zeros(3, 8, 8)


@pytest.fixture(scope="module")
def builtin():
    return BuiltinBackend.load(device="cpu")


@pytest.fixture(scope="module")
def upright():
    return render(sample_portraits(1, 424242))[0]  # (3, 128, 128): a face the built-in models redraw


# --------------------------------------------------------------------------- size


def test_a_169_megapixel_png_is_refused_from_its_header_at_once(tmp_path):
    blank_png(tmp_path / "huge.png", 13_000, 13_000)
    assert (tmp_path / "huge.png").stat().st_size < 100_000
    spy = Spy()
    started = time.perf_counter()
    with pytest.raises(EditError) as refusal:
        read_photo(spy, tmp_path / "huge.png")
    assert time.perf_counter() - started < 0.5 and spy.seen == []
    assert "megapixels" in str(refusal.value) and "40 megapixels" in str(refusal.value)


def test_a_picture_over_the_limit_is_refused_naming_its_size_and_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # read_photo sets Pillow's to its limit
    blank_png(tmp_path / "wide.png", 10_000, 5_000)
    spy = Spy()
    with pytest.raises(EditError) as refusal:
        read_photo(spy, tmp_path / "wide.png")
    assert str(refusal.value) == FEEDBACK.say("upload.too_large", size="10000×5000 pixels (50 megapixels)", limit="40")
    assert spy.seen == []
    with pytest.raises(EditError, match="the largest I take is 1 megapixels"):  # the limit is a setting
        read_photo(spy, tmp_path / "wide.png", IntakeLimits(max_pixels=1_000_000))


def test_an_upload_costs_bounded_memory_and_a_large_photo_reaches_the_backend_shrunk(tmp_path):
    """In a fresh process, so the peak resident memory is this upload's: refusing a 169-Mpx PNG
    costs almost nothing, and a 35-Mpx JPEG costs well under 300 MB and arrives at most 4096 px a side."""
    blank_png(tmp_path / "huge.png", 13_000, 13_000)
    gradient = Image.linear_gradient("L").resize((7000, 5000)).convert("RGB")
    gradient.save(tmp_path / "large.jpg", quality=85)
    del gradient
    script = textwrap.dedent(f"""
        import resource, torch
        from chatedit.editor import EditError
        from chatedit.intake import read_photo
        class Spy:
            sizes = []
            def intake(self, picture):
                self.sizes.append(picture.size)
                return torch.zeros(3, 8, 8)
        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        spy, start = Spy(), peak_mb()
        try:
            read_photo(spy, {str(tmp_path / "huge.png")!r})
        except EditError:
            pass
        refused = peak_mb()
        read_photo(spy, {str(tmp_path / "large.jpg")!r})
        print(refused - start, peak_mb() - start, spy.sizes)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    refused_mb, taken_mb, sizes = out.stdout.strip().split(" ", 2)
    assert float(refused_mb) < 20, out.stdout
    assert float(taken_mb) < 300, out.stdout
    assert sizes == "[(4096, 2926)]"


# --------------------------------------------------------------------------- blank pictures


@pytest.mark.parametrize("picture, name", [
    (Image.new("RGB", (1, 1), (200, 30, 30)), "dot.png"),  # one pixel
    (Image.new("RGB", (300, 300), (0, 255, 0)), "green.jpg"),  # a plain green square (JPEG adds faint noise)
    (Image.new("RGB", (300, 300), (0, 255, 0)), "green.png"),
    (Image.new("L", (64, 48), 255), "white.png"),
])
def test_blank_and_single_colour_pictures_are_refused_before_the_backend(tmp_path, picture, name):
    picture.save(tmp_path / name)
    spy = Spy()
    with pytest.raises(EditError) as refusal:
        read_photo(spy, tmp_path / name)
    assert str(refusal.value) == FEEDBACK.say("upload.blank") and spy.seen == []
    with pytest.raises(EditError, match="blank"):  # an open picture as well as a file
        read_photo(spy, picture)
    assert spy.seen == []


def test_a_blank_photo_refused_by_a_session_starts_no_backend_work(builtin, tmp_path, monkeypatch):
    editor = Editor(builtin, refine_steps=5)
    calls = []
    monkeypatch.setattr(builtin, "encode", lambda *a, **k: calls.append("encode"))
    Image.new("RGB", (300, 300), (0, 255, 0)).save(tmp_path / "green.png")
    with pytest.raises(EditError, match="blank"):
        editor.upload(DialogState(), read_photo(builtin, tmp_path / "green.png"))
    assert calls == []


# --------------------------------------------------------------------------- orientation


def test_a_photo_rotated_by_its_exif_orientation_is_taken_upright(builtin, upright, tmp_path):
    """A camera held sideways stores the pixels turned and says so in EXIF (orientation 6: turn
    them 90° clockwise to show them); the face reaches the backend upright and uploads."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    to_pil(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", quality=95,
                                                              exif=exif.tobytes())
    face = read_photo(builtin, tmp_path / "sideways.jpg")
    error = (face - builtin.intake(to_pil(upright))).pow(2).mean()
    assert -10 * torch.log10(error) > 35  # the upright face, but for JPEG's losses
    outcome = Editor(builtin, refine_steps=20).upload(DialogState(), face)
    assert outcome.changed and outcome.text.startswith("Got it.")


# --------------------------------------------------------------------------- text


def test_over_long_text_is_refused_and_only_an_excerpt_kept():
    message = check_text("make her smile " * 400_000)  # 6 MB
    assert message.refusal == FEEDBACK.say("text.too_long", n="6,000,000", limit="2,000")
    assert message.said == ("make her smile " * 14)[:200].rstrip() + "…"
    short = check_text("make her smile")
    assert short.refusal is None and short.said == "make her smile"
    assert check_text("x" * 2000).refusal is None and check_text("x" * 2001).refusal is not None


def test_a_session_stores_only_an_excerpt_of_an_over_long_message(tmp_path):
    from chatedit.agent import Agent
    from chatedit.rules_model import RulesChatModel
    from chatedit.sessions import SessionService
    from chatedit.store import SessionStore

    from fakes import OpenWorld

    sessions = SessionService(Agent(Editor(OpenWorld()), RulesChatModel()), SessionStore(tmp_path / "data"),
                              "open-world")
    sid = sessions.ensure(None)
    degrees = sessions.degrees(sid)
    list(sessions.chat(sid, "x" * 5_000_000))
    chat = sessions.chat_log(sid)
    assert chat[-2].text == "x" * 200 + "…" and "characters long" in chat[-1].text
    assert sessions.degrees(sid) == degrees
    stored = sessions.store.load(sid)
    assert max(len(line["text"] or "") for line in stored.chat) < 1000
    assert sum(f.stat().st_size for f in (tmp_path / "data").rglob("*") if f.is_file()) < 1_000_000
