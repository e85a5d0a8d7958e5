"""The built-in backend's registry entry: its options (and their flags), needs and availability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..registry import BackendSpec, Needs, option


@dataclass(frozen=True)
class BuiltinOptions:
    weights: Path | None = option(None, "--weights", "folder with the backend's models (default for builtin: the "
                                  "weights shipped in the package)", type=Path, metavar="DIR")
    device: str | None = option(None, "--device", "torch device (default: cuda when present, else cpu)")
    precision: str | None = option(None, "--precision", "networks' arithmetic: auto (bfloat16 on a CPU that "
                                   "computes it in hardware, else float32; or CHATEDIT_PRECISION), float32, bfloat16",
                                   choices=("auto", "float32", "bfloat16"))


def check(options: BuiltinOptions) -> str | None:
    from .backend import missing_files

    missing = missing_files(options.weights)
    return f"model files missing: {', '.join(missing)} (run `chatedit train builtin`)" if missing else None


SPEC = BackendSpec(
    name="builtin",
    summary="our own portrait world: a renderer, and an autoencoder, predictors, identity model and semantic "
            "fields trained on this CPU; draws its own portraits",
    verified="Trained and benchmarked here (chatedit bench edit, chatedit bench builtin).",
    options=BuiltinOptions,
    needs=Needs(weights="shipped in the package", gpu="no"),
    backend="chatedit.tools.builtin.backend:BuiltinBackend",
    check=check,
)
