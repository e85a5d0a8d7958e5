"""The registry of editing backends: what exists, what each needs, its options and how to load it.

Each backend folder has a light ``plugin.py`` (nothing heavy imported) with an options dataclass,
whose fields declare the command-line flags they come from (``option``), and a ``BackendSpec``.
``REGISTERED`` names those modules; a new backend is one folder plus one line here. The CLI's
argument groups, ``build_agent``, ``serve``, ``bench`` and ``chatedit backends`` all read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .backend import Backend, Capabilities

REGISTERED = {
    "builtin": "chatedit.tools.builtin.plugin",
    "stylegan2": "chatedit.tools.stylegan2.plugin",
    "diffusion": "chatedit.tools.diffusion.plugin",
    "wplus": "chatedit.tools.wplus.plugin",
}


def option(default: Any = None, flag: str | None = None, help: str = "", *, type: Callable | None = None,
           choices: tuple | None = None, metavar: str | None = None, boolean: bool = False) -> Any:
    """A field of a backend's options dataclass, given on the command line as ``flag`` (None: set by
    the program, e.g. the data folder ``serve`` keeps photos in, never typed by a person)."""
    meta = {"flag": flag, "help": help, "type": type, "choices": choices, "metavar": metavar, "boolean": boolean}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Needs:
    """What a backend needs beyond the package itself, in words a person can act on."""

    weights: str  # which files, and where from
    gpu: str  # "no", "advised" or "required", with why
    extras: tuple[str, ...] = ()  # pip extras that add optional parts, e.g. "faces"
    packages: tuple[str, ...] = ()  # importable modules it cannot run without


@dataclass(frozen=True)
class BackendSpec:
    name: str
    summary: str  # one line: what it does
    verified: str  # one line: how it was verified
    options: type  # a frozen dataclass whose fields are made with ``option``
    needs: Needs
    backend: str  # "module:Class" of the backend, imported only when it is loaded
    check: Callable[[Any], str | None]  # options → why it cannot run now (None: it can)

    def backend_class(self) -> "type[Backend]":
        module, _, name = self.backend.partition(":")
        return getattr(importlib.import_module(module), name)

    def capabilities(self) -> "Capabilities":
        return self.backend_class().capabilities

    def make_options(self, **given) -> Any:
        """The options dataclass from keyword values; a value another backend takes is refused by name."""
        own = {f.name for f in dataclasses.fields(self.options)}
        foreign = sorted(set(given) - own)
        if foreign:
            owners = [s.name for s in specs() if set(foreign) <= {f.name for f in dataclasses.fields(s.options)}]
            flags = ", ".join(_flag_of(name) for name in foreign)
            kind = "an option" if len(foreign) == 1 else "options"
            where = f"{kind} of --backend {' or '.join(owners)}" if owners else "not an option of any backend"
            raise ValueError(f"{flags}: {where}, not of --backend {self.name}")
        return self.options(**given)

    def load(self, options: Any) -> "Backend":
        """The backend, its models loaded once; a reason it cannot run is raised before anything loads."""
        why = self.check(options)
        if why is not None:
            raise FileNotFoundError(f"--backend {self.name}: {why}")
        return self.backend_class().from_options(options)


def specs() -> list[BackendSpec]:
    return [get(name) for name in REGISTERED]


def names() -> tuple[str, ...]:
    return tuple(REGISTERED)


def get(name: str) -> BackendSpec:
    if name not in REGISTERED:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(REGISTERED)}")
    return importlib.import_module(REGISTERED[name]).SPEC


def load(name: str, **given) -> "Backend":
    """The backend ``name`` with its options (``weights``, ``device``, ``model``, ...)."""
    spec = get(name)
    return spec.load(spec.make_options(**given))


# --------------------------------------------------------------------------- the command line


def _flags() -> dict[str, list[tuple[BackendSpec, dataclasses.Field]]]:
    """Each flag with the backends (and their fields) that take it, in registry order."""
    flags: dict[str, list] = {}
    for spec in specs():
        for f in dataclasses.fields(spec.options):
            if f.metadata.get("flag"):
                flags.setdefault(f.metadata["flag"], []).append((spec, f))
    return flags


def _flag_of(name: str) -> str:
    for users in _flags().values():
        for _, f in users:
            if f.name == name:
                return f.metadata["flag"]
    return name


def add_arguments(parser: argparse.ArgumentParser, backends: tuple[str, ...] | None = None) -> None:
    """Every registered backend's flags (or those of ``backends``), one group per backend; a flag
    several backends share (``--weights``, ``--device``) is added once, its help naming each use."""
    chosen = backends or names()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag, users in _flags().items():
        users = [(s, f) for s, f in users if s.name in chosen]
        if not users:
            continue
        spec, first = users[0]
        owner = "shared" if len(users) > 1 else spec.name
        if owner not in groups:
            title = "options of several backends" if owner == "shared" else f"{owner} backend (--backend {owner})"
            groups[owner] = parser.add_argument_group(title)
        meta = first.metadata
        helps: dict[str, list[str]] = {}  # the same words for several backends are said once
        for s, f in users:
            helps.setdefault(f.metadata["help"], []).append(s.name)
        text = next(iter(helps)) if len(helps) == 1 else " ".join(f"{', '.join(n)}: {h}" for h, n in helps.items())
        kwargs: dict[str, Any] = dict(dest=first.name, default=None, help=text)
        if meta["boolean"]:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=meta["type"] or str, metavar=meta["metavar"], choices=meta["choices"])
        groups[owner].add_argument(flag, **kwargs)


def given_options(args: argparse.Namespace, backends: tuple[str, ...] | None = None) -> dict:
    """The backend options typed on the command line (flags left out are not passed at all)."""
    out = {}
    for flag, users in _flags().items():
        name = users[0][1].name
        if (backends is None or any(s.name in backends for s, _ in users)) and getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out


# --------------------------------------------------------------------------- chatedit backends


def describe(name: str, **given) -> dict:
    """What ``chatedit backends`` says of one backend: needs, options, capabilities, availability now."""
    spec = get(name)
    try:
        options = spec.make_options(**{k: v for k, v in given.items()
                                       if k in {f.name for f in dataclasses.fields(spec.options)}})
        why = spec.check(options)
    except (ValueError, TypeError) as error:
        why = str(error)
    try:
        capabilities = dataclasses.asdict(spec.capabilities())
    except ImportError as error:  # a package it needs is missing: say so rather than fail the listing
        capabilities, why = None, why or f"cannot import it ({error})"
    return {
        "name": spec.name, "summary": spec.summary, "verified": spec.verified,
        "needs": dataclasses.asdict(spec.needs),
        "options": [{"name": f.name, "flag": f.metadata.get("flag"), "default": _plain(f.default),
                     "help": f.metadata.get("help", "")} for f in dataclasses.fields(spec.options)
                    if f.metadata.get("flag")],
        "capabilities": capabilities,
        "available": why is None, "why_not": why,
    }


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def markdown(rows: list[dict]) -> str:
    lines = ["| backend | what it does | weights | GPU | runs here now |", "|---|---|---|---|---|"]
    for row in rows:
        now = "yes" if row["available"] else f"no: {row['why_not']}"
        lines.append(f"| {row['name']} | {row['summary']} | {row['needs']['weights']} | {row['needs']['gpu']} | {now} |")
    for row in rows:
        flags = ", ".join(o["flag"] for o in row["options"]) or "none"
        extras = ", ".join(f".[{e}]" for e in row["needs"]["extras"]) or "none"
        lines += ["", f"**{row['name']}**: {row['verified']} Options: {flags}. Optional extras: {extras}."]
    return "\n".join(lines)
