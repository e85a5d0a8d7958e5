"""Progress for the long commands: tqdm bars on stderr, so stdout keeps only the results people pipe.

Bars stay on when stderr is not a terminal (CI logs show progress too); ``mininterval`` keeps
such logs short. Commands turn them off with ``--quiet``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def bar(iterable: Iterable | None = None, desc: str | None = None, *, show: bool = True, total: int | None = None,
        unit: str = "it", leave: bool = True) -> tqdm:
    """A bar on stderr over ``iterable`` (or ``total`` steps counted with ``update``); a silent
    pass-through when ``show`` is false."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=not show, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def echo(text: str) -> None:
    """``print`` for result lines written while bars show: the bars step aside, then return below the line."""
    tqdm.write(text, file=sys.stdout)


def short(text: str, width: int = 40) -> str:
    """``text`` on one line, cut to ``width`` characters (with an ellipsis when cut), for a bar's label."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
