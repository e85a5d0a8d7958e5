"""Contact sheets: pictures of what the built-in world looks like."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from chatedit.attributes import load_attributes
from chatedit.images import to_pil
from chatedit.tools.builtin.renderer import (IDENTITY, Portraits, attribute_columns, is_plausible, render,
                                             sample_portraits)

CELL = 128
LABEL_W = 110
HEADER_H = 34


def wrap(text: str, width: int = 20) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def degree_sheet(faces: int = 3, seed: int = 7) -> Image.Image:
    """Rendered faces × the six degrees of each attribute, one block per attribute."""
    attributes = load_attributes()
    pool = sample_portraits(64, seed)
    masc = pool.identity[:, IDENTITY.index("masc")]
    rows: list[tuple[str, torch.Tensor]] = []
    for a, attribute in enumerate(attributes):
        # beards belong on adult men; every other attribute is shown on anyone
        if attribute.name == "beard":
            candidates = torch.nonzero(masc > 0.5).flatten()
        else:
            candidates = torch.arange(len(pool))
        chosen = candidates[a * faces : (a + 1) * faces] if len(candidates) >= (a + 1) * faces else candidates[:faces]
        for i in chosen.tolist():
            values = pool.attributes[i].repeat(6, 1)
            values[:, a] = torch.arange(6, dtype=values.dtype)
            if attribute.name == "beard":
                values[:, attributes.index(next(x for x in attributes if x.name == "age"))] = 3.0
            person = Portraits(pool.identity[i].repeat(6, 1), pool.scene[i].repeat(6, 1), values)
            rows.append((attribute.label, render(person)))

    width = LABEL_W + 6 * CELL
    height = len(attributes) * HEADER_H + len(rows) * CELL
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for a, attribute in enumerate(attributes):
        for d in range(6):
            text = "\n".join(wrap(f"{d}: {attribute.degrees[d]}", 22)[:2])
            draw.multiline_text((LABEL_W + d * CELL + 3, y + 2), text, fill="black", spacing=1)
        y += HEADER_H
        for label, images in rows[a * faces : (a + 1) * faces]:
            draw.text((6, y + CELL // 2 - 6), label, fill="black")
            for d in range(6):
                sheet.paste(to_pil(images[d]), (LABEL_W + d * CELL, y))
            y += CELL
    return sheet


def _bearded_look(portrait: Portraits, full: torch.Tensor) -> bool:
    """Whether a sampled person is a clean-shaven man of beard-growing age who looks a man at a glance:
    short hair, no fringe (the world lets long-haired men with fringes grow beards too, but in a
    figure they read as women)."""
    hair_len = portrait.identity[0, IDENTITY.index("hair_len")]
    bangs, beard, age = (portrait.attributes[0, attribute_columns().index(name)] for name in ("bangs", "beard", "age"))
    looks = hair_len < 0.25 and bangs < 0.5 and beard < 0.5 and 1.5 < age < 3.5
    return bool(looks and is_plausible(portrait.identity, full)[0])


def edit_sheet(backend, seed: int = 3, frames: int = 7) -> Image.Image:
    """For each attribute, one face walked across the degree range by the field and by the linear
    baseline: evenly spaced frames of each walk, start on the left, result on the right."""
    from chatedit.tools.walk import FaceState, edit

    attributes = load_attributes()
    rows: list[tuple[str, list[torch.Tensor], list[str]]] = []
    for a, attribute in enumerate(attributes):
        face_seed = seed
        if attribute.name == "beard":  # a man the world lets grow a full beard, who reads as one
            full = torch.tensor([[0.0, 0.0, 5.0, 0.0, 3.0]])
            while not _bearded_look(sample_portraits(1, face_seed), full):
                face_seed += 1
        w = backend.sample(face_seed)
        image = backend.generate(w)
        start = int(backend.predict(image).degrees[0, a])
        target = 0 if start >= 3 else 5
        state = FaceState(w, backend.identity(image))
        for method in ("field", "linear"):
            result = edit(backend, state, attribute.name, target=target, method=method)
            walk = result.frames[: result.chosen + 1]
            picks = [walk[round(i * (len(walk) - 1) / (frames - 1))] for i in range(frames)]
            captions = [f"{f.degrees[attribute.name]}" for f in picks]
            label = f"{attribute.label} {start} to {target}\n{method}\nid {result.identity_similarity:.2f}"
            rows.append((label, [f.image for f in picks], captions))

    width = LABEL_W + frames * CELL
    sheet = Image.new("RGB", (width, len(rows) * (CELL + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images, captions) in enumerate(rows):
        y = r * (CELL + 14)
        draw.multiline_text((6, y + CELL // 2 - 18), label, fill="black", spacing=2)
        for c, (img, caption) in enumerate(zip(images, captions)):
            sheet.paste(to_pil(img), (LABEL_W + c * CELL, y))
            draw.text((LABEL_W + c * CELL + CELL // 2 - 16, y + CELL + 1), f"deg {caption}", fill="black")
    return sheet
