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
from collections.abc import Mapping
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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose tensors do not fit the model."""


def check_state(expected: Mapping[str, torch.Tensor], got: Mapping, source: str, needs: str,
                prefix: str = "") -> None:
    """Raises a ``CheckpointError`` naming the first key of ``got`` (a state dict read from ``source``)
    that is missing, not a tensor, misshapen or unexpected, against ``expected``: the state dict of
    ``needs`` (the model the loader rebuilt, in words). ``prefix``: the keys' prefix in the file."""
    missing = [key for key in expected if key not in got]
    if missing:
        more = f" ({len(missing)} missing in all)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source} is missing key {prefix + missing[0]!r}{more}, which {needs} needs")
    for key, tensor in expected.items():
        value = got[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {prefix + key!r} should be a tensor but is a {type(value).__name__}")
        if value.shape != tensor.shape:
            raise CheckpointError(f"{source}: {prefix + key!r} has shape {tuple(value.shape)}, but {needs} needs "
                                  f"{tuple(tensor.shape)}")
    unexpected = [key for key in got if key not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source} has unexpected key {prefix + unexpected[0]!r}{more}: {needs} has no such "
                              f"weight")
