"""Memory a long-running server gives back to the system (glibc's allocator; elsewhere nothing).

Turns run in many threads, and glibc's malloc gives each thread an arena of its own (up to eight
per core) that keeps what was freed in it: a server's resident memory grew by hundreds of MB over
a few hundred turns with nothing alive to show for it. ``limit_arenas`` caps the arenas when the
server starts; ``release`` hands memory freed in all arenas back when a session's turns are done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _libc()


def limit_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` malloc arenas from now on; False where the allocator is not glibc's."""
    if _LIBC is None:
        return False
    ok = bool(_LIBC.mallopt(M_ARENA_MAX, arenas))
    if not ok:
        logger.warning("mallopt(M_ARENA_MAX, %d) was refused", arenas)
    return ok


def release() -> None:
    """Gives memory freed in every arena back to the system (a few ms; call it when idle)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


__all__ = ["limit_arenas", "release"]
