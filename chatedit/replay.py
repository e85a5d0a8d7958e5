"""``chatedit replay``: run scripted conversations end to end and check what happened to the face.

A script (YAML) names a start face and a list of turns; each turn's ``expect`` is checked against
what the session measured after the turn. The format is a contract other tools write:

    name: smile-then-glasses
    backend: builtin          # optional
    llm: rules                # optional
    start: {seed: 38}         # or {image: faces/me.png}, relative to the script
    turns:
      - user: "Remove the smile completely."
        expect: {degrees: {smiling: 0, "*": same}, calls: [edit_attribute], reply_matches: "(?i)smil",
                 identity_min: 0.8}

Degree expectations: an integer, ">=n", "<=n", ``up`` / ``down`` / ``same`` (against the degree
before the turn), ``start`` (the degree at the start of the script); ``"*"`` covers every
attribute the turn does not name. ``calls`` lists tool names, order-insensitive.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from chatedit.llms import LLMSettings

from chatedit.attributes import MAX_DEGREE, attribute_names
from chatedit.progress import bar, short

logger = logging.getLogger(__name__)

EXPECT_KEYS = {"degrees", "calls", "reply_matches", "identity_min"}
WORDS = {"up", "down", "same", "start"}


class ScriptError(ValueError):
    """A malformed script: the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Turn:
    user: str
    expect: dict
    line: int


@dataclass(frozen=True)
class Script:
    path: Path
    name: str
    backend: str
    llm: str
    start: dict  # {"seed": int} or {"image": Path}
    turns: list[Turn] = field(repr=False)


# --------------------------------------------------------------------------- reading scripts


class _LineLoader(yaml.SafeLoader):
    """Safe YAML that remembers the line of every mapping (as ``__line__``) for error messages."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _check_degree(value, where: str) -> None:
    if isinstance(value, bool) or not (
        (isinstance(value, int) and 0 <= value <= MAX_DEGREE)
        or (isinstance(value, str) and (value in WORDS or re.fullmatch(rf"(>=|<=)[0-{MAX_DEGREE}]", value)))
    ):
        raise ScriptError(f"{where}: degree expectation {value!r} is not 0-{MAX_DEGREE}, '>=n', '<=n', up, down, same "
                          "or start")


def _check_expect(expect, where: str) -> dict:
    if expect is None:
        return {}
    if not isinstance(expect, dict):
        raise ScriptError(f"{where}: expect must be a mapping, got {type(expect).__name__}")
    line = expect.pop("__line__", None)
    where = f"{where.rsplit(':', 1)[0]}:{line}" if line else where
    unknown = set(expect) - EXPECT_KEYS
    if unknown:
        raise ScriptError(f"{where}: unknown expect key(s) {sorted(unknown)}; use {sorted(EXPECT_KEYS)}")
    degrees = expect.get("degrees")
    if degrees is not None:
        if not isinstance(degrees, dict):
            raise ScriptError(f"{where}: expect.degrees must be a mapping of attribute to expectation")
        degrees.pop("__line__", None)
        names = attribute_names()
        for name, value in degrees.items():
            if name != "*" and name not in names:
                raise ScriptError(f"{where}: unknown attribute {name!r} in expect.degrees; use {', '.join(names)} or '*'")
            _check_degree(value, where)
    calls = expect.get("calls")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(c, str) for c in calls)):
        raise ScriptError(f"{where}: expect.calls must be a list of tool names, e.g. [edit_attribute]")
    if "reply_matches" in expect:
        try:
            re.compile(str(expect["reply_matches"]))
        except re.error as err:
            raise ScriptError(f"{where}: reply_matches is not a regular expression ({err})")
    if "identity_min" in expect and not isinstance(expect["identity_min"], (int, float)):
        raise ScriptError(f"{where}: identity_min must be a number, got {expect['identity_min']!r}")
    return expect


def load_script(path: str | Path) -> Script:
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_LineLoader)
    except OSError as err:
        raise ScriptError(f"{path}: cannot read ({err.strerror})")
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ScriptError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})")
    if not isinstance(data, dict):
        raise ScriptError(f"{path}:1: a script is a mapping with 'turns' (and 'name', 'start', ...)")
    top = data.pop("__line__", 1)
    unknown = set(data) - {"name", "backend", "llm", "start", "turns"}
    if unknown:
        raise ScriptError(f"{path}:{top}: unknown key(s) {sorted(unknown)}")
    start = data.get("start") or {"seed": 0}
    if not isinstance(start, dict):
        raise ScriptError(f"{path}:{top}: start must be {{seed: N}} or {{image: PATH}}")
    start_line = start.pop("__line__", top)
    if set(start) == {"seed"} and isinstance(start["seed"], int) and not isinstance(start["seed"], bool):
        start = {"seed": start["seed"]}
    elif set(start) == {"image"} and isinstance(start["image"], str):
        start = {"image": (path.parent / start["image"]).resolve()}
    else:
        raise ScriptError(f"{path}:{start_line}: start must be {{seed: N}} or {{image: PATH}}, got {start!r}")
    turns = data.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ScriptError(f"{path}:{top}: 'turns' must be a non-empty list")
    parsed = []
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise ScriptError(f"{path}:{top}: turn {i} must be a mapping with 'user'")
        line = turn.pop("__line__", top)
        if set(turn) - {"user", "expect"}:
            raise ScriptError(f"{path}:{line}: turn {i} has unknown key(s) {sorted(set(turn) - {'user', 'expect'})}")
        if not isinstance(turn.get("user"), str):
            raise ScriptError(f"{path}:{line}: turn {i} needs 'user' text (quote it if it looks like a number)")
        parsed.append(Turn(turn["user"], _check_expect(turn.get("expect"), f"{path}:{line}"), line))
    name = str(data.get("name") or path.stem)
    if not re.fullmatch(r"[\w.-]+", name):
        raise ScriptError(f"{path}:{top}: name {name!r} must be letters, digits, '-', '_' or '.' (it names a folder)")
    return Script(path, name, str(data.get("backend") or "builtin"), str(data.get("llm") or "rules"), start, parsed)


def find_scripts(paths: list[str | Path]) -> list[Path]:
    found = []
    for p in map(Path, paths):
        found += sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")) if p.is_dir() else [p]
    return found


# --------------------------------------------------------------------------- checking a turn


def check(expect: dict, before: dict, after: dict, start: dict, calls: list[str], reply: str,
          identity: float | None) -> list[str]:
    """What did not happen as expected, one sentence per failure."""
    failures = []
    wanted = dict(expect.get("degrees") or {})
    default = wanted.pop("*", None)
    if default is not None:
        wanted.update({n: default for n in attribute_names() if n not in wanted})
    for name, rule in wanted.items():
        now, was = after[name], before[name]
        if isinstance(rule, int):
            ok, said = now == rule, f"{rule}"
        elif rule.startswith(">="):
            ok, said = now >= int(rule[2:]), rule
        elif rule.startswith("<="):
            ok, said = now <= int(rule[2:]), rule
        else:
            ok = {"up": now > was, "down": now < was, "same": now == was, "start": now == start[name]}[rule]
            said = f"{rule} (before {was}, at start {start[name]})"
        if not ok:
            failures.append(f"{name} is {now}, expected {said}")
    if "calls" in expect and Counter(expect["calls"]) != Counter(calls):
        failures.append(f"calls were {sorted(calls)}, expected {sorted(expect['calls'])}")
    if "reply_matches" in expect and not re.search(str(expect["reply_matches"]), reply):
        failures.append(f"reply {reply!r} does not match {expect['reply_matches']!r}")
    if "identity_min" in expect and identity is None:
        failures.append("identity_min is set but this backend has no identity model")
    elif "identity_min" in expect and identity < float(expect["identity_min"]):
        failures.append(f"identity similarity {identity:.3f} is below {expect['identity_min']}")
    return failures


# --------------------------------------------------------------------------- running


def run_script(script: Script, agent, out_dir: Path, progress: bool = False) -> dict:
    """Plays one script through ``agent`` and writes its transcript, images, GIF and sheet.
    ``progress``: a bar on stderr over the turns, showing the words of the turn under way."""
    from chatedit.agent import FrameEvent, Reply
    from chatedit.editor import EditError
    from chatedit.images import to_pil
    from chatedit.intake import read_photo

    folder = out_dir / script.name
    folder.mkdir(parents=True, exist_ok=True)
    image = None
    if "image" in script.start:
        try:
            image = read_photo(agent.editor.backend, script.start["image"])
        except EditError as refusal:
            raise ScriptError(f"{script.path}: start image {script.start['image']}: {refusal}") from None
    session, opened = agent.open(f"replay-{script.name}-{time.monotonic_ns()}", seed=script.start.get("seed"),
                                 image=image)
    turn_bar = bar(None, script.name, show=progress, total=len(script.turns), unit="turn", leave=False)
    try:
        state = session.state
        start = dict(state.current.degrees)
        to_pil(opened.image).save(folder / "turn_00.png")
        stills, movie = [(to_pil(opened.image), "(start)")], [to_pil(opened.image)]
        turns = []
        for number, turn in enumerate(script.turns, 1):
            turn_bar.set_postfix_str(short(turn.user))
            before = dict(state.current.degrees)
            t0 = time.perf_counter()
            steps, reply = 0, None
            for event in agent.chat(session.id, turn.user):
                if isinstance(event, FrameEvent) and not event.preview:
                    steps += 1
                    if steps % 3 == 0:
                        movie.append(to_pil(event.image))
                elif isinstance(event, Reply):
                    reply = event
            ms = 1000 * (time.perf_counter() - t0)
            identity = agent.editor.identity_similarity(state)
            failures = check(turn.expect, before, reply.degrees, start, [c["name"] for c in reply.calls],
                             reply.text, identity)
            shown = to_pil(reply.image)
            png = f"turn_{number:02d}.png"
            shown.save(folder / png)
            stills.append((shown, turn.user))
            movie += [shown] * 4
            turns.append({
                "user": turn.user, "reply": reply.text,
                "calls": [{"name": c["name"], "args": c["args"]} for c in reply.calls],
                "degrees": reply.degrees, "identity_similarity": None if identity is None else round(identity, 4), "steps": steps,
                "image": png, "ms": round(ms, 1), "expect": turn.expect, "passed": not failures,
                "failures": failures, "line": turn.line,
            })
            turn_bar.update()
    finally:
        turn_bar.close()
        agent.close(session.id)
    transcript = {"name": script.name, "backend": script.backend, "llm": script.llm, "start_degrees": start,
                  "turns": turns}
    (folder / "transcript.json").write_text(json.dumps(transcript, indent=2))
    movie[0].save(folder / "conversation.gif", save_all=True, append_images=movie[1:], duration=120, loop=0)
    conversation_sheet(stills).save(folder / "sheet.png")
    return transcript


def conversation_sheet(stills: list, cell: int = 128, per_row: int = 6):
    """The conversation as strips of faces with the person's words under each."""
    from PIL import Image, ImageDraw

    from chatedit.sheet import wrap

    text_h = 52
    rows = (len(stills) + per_row - 1) // per_row
    sheet = Image.new("RGB", (per_row * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (image, words) in enumerate(stills):
        x, y = (k % per_row) * cell, (k // per_row) * (cell + text_h)
        sheet.paste(image.resize((cell, cell)), (x, y))
        lines = wrap(words, 21)
        text = "\n".join(lines[:4]) + ("…" if len(lines) > 4 else "")
        draw.multiline_text((x + 3, y + cell + 2), text, fill="black", spacing=1)
    return sheet


def replay(paths: list[str | Path], out: str | Path, backend: str | None = None,
           llm: "str | LLMSettings | None" = None, echo=print, progress: bool = False) -> tuple[int, int, int]:
    """Replays every script; returns (turns passed, turns failed, scripts that could not run).

    ``backend`` and ``llm`` override every script's own (``llm`` may carry a server address).
    ``progress``: bars on stderr, one over the scripts and one over the turns of the script under way
    (pass ``echo=chatedit.progress.echo`` so that result lines do not break them)."""
    from chatedit.agent import build_agent
    from chatedit.llms import LLMSettings

    settings = LLMSettings(llm) if isinstance(llm, str) else llm
    agents: dict[tuple[str, str], object] = {}
    passed = failed = broken = 0
    for path in bar(find_scripts(paths), "replay", show=progress, unit="script"):
        try:
            script = load_script(path)
            key = (backend or script.backend, settings.name if settings else script.llm)
            if key not in agents:
                agents[key] = build_agent(backend=key[0], llm=settings or LLMSettings(key[1]))
            script = Script(script.path, script.name, key[0], key[1], script.start, script.turns)
            transcript = run_script(script, agents[key], Path(out), progress)
        except (ScriptError, ValueError) as err:
            echo(f"ERROR {err}")
            broken += 1
            continue
        for turn in transcript["turns"]:
            if turn["passed"]:
                passed += 1
            else:
                failed += 1
                for failure in turn["failures"]:
                    echo(f"FAIL {script.path}:{turn['line']} {turn['user']!r}: {failure}")
    summary = f"{passed} passed, {failed} failed"
    echo(summary + (f" ({broken} script{'s' if broken != 1 else ''} could not run)" if broken else ""))
    return passed, failed, broken
