"""A 48-bit key (of a photo, or of a photo's tuned generator) carried inside a float32 latent.

The photo backends keep per-photo state (a diffusion inversion, a Pivotal Tuning) outside the
latent the walk moves, and name it in the latent instead, so undo, the session store and the GIF
carry it unchanged. A float32 holds every integer below 2**24 exactly, so a key is written as two
24-bit halves.
"""

from __future__ import annotations

KEY_BITS = 24  # per float32 entry: integers below 2**24 are exact


def split_key(key: int) -> tuple[float, float]:
    """A key below 2**48 as two float32-exact halves (high, low)."""
    high, low = divmod(key, 2**KEY_BITS)
    return float(high), float(low)


def join_key(high: float, low: float) -> int:
    """The key written by ``split_key``."""
    return round(high) * 2**KEY_BITS + round(low)
