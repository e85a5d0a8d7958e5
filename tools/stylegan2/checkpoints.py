"""Reading published checkpoints safely: ``torch.load(weights_only=True)`` and a short allow-list.

Only tensors, plain containers and these few things are unpickled; any other object in a file
makes the load fail instead of running code from it:

- ``argparse.Namespace``: rosinality's training checkpoints keep their command line (``args``);
- numpy numbers and arrays of numbers: training scripts save a best accuracy, a loss or
  per-attribute accuracies next to the weights (Talk-to-Edit's predictor checkpoints keep
  ``best_prec1``). Allowed are numpy's scalar and array reconstruction (``scalar``,
  ``_reconstruct``, ``ndarray``), ``dtype``, and the dtype classes of booleans, integers, floats
  and complex numbers only, so an object array (whose elements are pickled objects), a string or
  a structured array is refused at its dtype. Both module names are allowed, ``numpy.core``
  (files written with numpy 1) and ``numpy._core`` (numpy 2).
"""

from __future__ import annotations

import argparse
import contextlib
from functools import lru_cache
from pathlib import Path

import torch

NUMERIC_DTYPE_CODES = "?" + "bBhHiIlLqQnNpP" + "efdgFDG"  # bool, every integer, float and complex type


@lru_cache(maxsize=1)
def allowed_globals() -> tuple:
    """What ``safe_load`` unpickles beyond tensors: objects, or (object, "module.name") for names
    other than the object's own (numpy 1's ``numpy.core`` in files read with numpy 2)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    allowed: list = [argparse.Namespace, np.ndarray, np.dtype]
    for function in (core.multiarray.scalar, core.multiarray._reconstruct):
        allowed += [(function, f"{module}.multiarray.{function.__name__}") for module in ("numpy.core", "numpy._core")]
    # an array or scalar is built only if its dtype's class is here; object, string, void and datetime are not
    allowed += sorted({type(np.dtype(code)) for code in NUMERIC_DTYPE_CODES} - {np.dtype}, key=str)
    return tuple(allowed)


def safe_load(path: str | Path):
    """``torch.load`` onto the CPU that unpickles tensors, plain containers and ``allowed_globals`` only."""
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with allow(list(allowed_globals())) if allow else contextlib.nullcontext():
        return torch.load(path, map_location="cpu", weights_only=True)
