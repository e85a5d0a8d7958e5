"""What a test needs that an extra installs: skipped with the sentence saying how to install it,
except in CI (``CI=true``), which installs every extra, so there a missing one fails."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI") == "true"


def need(ok: bool, message: str, extra: str = "faces") -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{message}, but CI installs the [{extra}] extra")
    pytest.skip(message)


def need_faces() -> None:
    """dlib and its models (the ``faces`` extra)."""
    from chatedit import faces

    need(faces.available(), f"dlib's face models are not installed ({faces.INSTALL_HINT})")
