"""Reading published checkpoints safely: ``torch.load(weights_only=True)`` and a short allow-list.

Only tensors, plain containers and these few classes are unpickled; any other object in a file
makes the load fail instead of running code from it:

- ``argparse.Namespace``: rosinality's training checkpoints keep their command line (``args``);
- numpy scalars and their dtypes: training scripts save a best accuracy or a loss next to the
  weights as a numpy number (Talk-to-Edit's predictor checkpoints keep ``best_prec1``).
"""

from __future__ import annotations

import argparse
import contextlib
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def allowed_globals() -> tuple:
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    allowed = [argparse.Namespace, np.dtype, core.multiarray.scalar]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType",
                                                       "Int32DType", "BoolDType") if hasattr(dtypes, name)]
    return tuple(allowed)


def safe_load(path: str | Path):
    """``torch.load`` onto the CPU that unpickles tensors, plain containers and ``allowed_globals`` only."""
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with allow(list(allowed_globals())) if allow else contextlib.nullcontext():
        return torch.load(path, map_location="cpu", weights_only=True)
