"""Sessions, once for every front end: open, restore, evict, persist, turns, photo intake, downloads.

The page (``chatedit serve``), ``chatedit chat`` and ``chatedit replay`` are front ends over
this module. A ``SessionService`` holds the process's one ``Agent`` and ``SessionStore`` and, for
each open session, the chat as it is stored (lines of text and faces saved as PNG files) and its
queue of turns (``chatedit.turns``).

A turn (``chat``, ``act``, ``upload``) is queued behind the session's earlier ones and runs in the
session's worker to its end, whoever listens: the call returns at once with a listener to its
events (the agent's, plus a ``Said`` each time the chat grows); closing or dropping it stops
nothing. A turn is atomic: it ends with its turn log, reply, memory and chat written to the store,
or, when it breaks or cannot be written, with the session as it was before it (a bug leaves the
person's line and a sentence saying so; a failed write leaves nothing but a ``Notice``). ``view``
gives what a front end shows for a session as plain data; the edit-path GIF is drawn only when
asked for (``edit_path_gif``), each frame once.

With logins (``user``), a session belongs to the login that created it; without, its id is the
credential.

Several processes may serve one session from a shared store (PostgreSQL): a turn holds the
store's ``turn_lock`` on the session, so turns from two processes run one after the other, and
starts from what the store holds (a turn another process saved meanwhile is brought in first);
a save based on an older copy is refused by the store and the turn undone, never written over.

Photo intake is ``chatedit.intake.read_photo``: checked and bounded before the backend finds and
aligns the face; every refusal an ``EditError`` whose message is a sentence for the person.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import torch
from PIL import Image

from chatedit import memory
from chatedit.agent import Agent, Event, FrameEvent, Reply, ToolEvent
from chatedit.attributes import in_words
from chatedit.edit_path import EditPathFrames, path_key
from chatedit.editor import EditError
from chatedit.feedback import load_feedback
from chatedit.images import DISPLAY_PX, display_size, to_pil
from chatedit.intake import check_text, face_of, read_photo, read_picture
from chatedit.limits import RateLimit
from chatedit.replay import conversation_sheet
from chatedit.state import DialogState, Entry
from chatedit.store import SavedSession, SessionStore, StoreError, valid_session_id
from chatedit.turns import Job, TurnQueue

logger = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.04  # at most ~25 preview updates a second; the last frame is always shown
MAX_OPEN_SESSIONS = 200  # sessions kept in memory; the others wait in the store
MAX_RUNNING = 2  # turns running at once over all sessions
WELCOME = " Tell me what to change, move a slider, or upload a photo of your own."
TURN_FAILED = "Something went wrong on my side; the face was left as it was."
UPLOAD_FAILED = "Something went wrong on my side with that photo."
NOT_SAVED = ("I couldn't save that turn (the server could not write it, perhaps its disk is full), so I undid it: "
             "the face and the conversation are as they were. Please try again in a little while.")
NOT_YOURS = "That conversation belongs to another login, so here is a new one of your own."
BUSY = "This conversation is busy with a turn in another window; please try again in a little while."

T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """One line of the chat: words, or a face (an absolute path to its PNG)."""

    role: str  # "user" or "assistant"
    text: str | None
    image: Path | None
    waiting: bool = False  # the person's message, queued behind a turn still running (not stored yet)
    words: str | None = None  # what a face shows in words (its degrees when it was drawn), for its alt text


@dataclass(frozen=True)
class Said:
    """The chat grew by ``line`` (the person's words, a face, a reply or a refusal)."""

    line: Line


@dataclass(frozen=True)
class Queued:
    """The turn waits for the session's earlier turns; its line shows as waiting in ``chat_log``."""


@dataclass(frozen=True)
class Notice:
    """A sentence for the person that is not part of the conversation: the turn was undone."""

    text: str


class TooManySessions(Exception):
    """A client asked for more new sessions than it may open; the message is a sentence for it."""


@dataclass(frozen=True)
class View:
    """What a front end shows for a session, the files already written."""

    session_id: str
    chat: tuple[Line, ...]
    image: Path | None  # the face shown, as a PNG: the "Download PNG" file (None: no face yet, as below)
    degrees: dict[str, int]  # empty with no face yet
    before: Image.Image | None  # the original face and the face shown, for a side-by-side comparison
    after: Image.Image | None
    identity: float | None  # how much the face shown is still the original person; None: no identity model
    undo: int
    redo: int


@dataclass
class _Open:
    """An open session's own bookkeeping beside the agent's ``Session``."""

    chat: list[dict]  # as stored: {"role", "text", "image"[, "words"]}, image relative to the data dir
    created: float
    used: float  # when it was last asked for
    owner: str | None  # the login that created it; None without logins
    turns: TurnQueue
    version: int = 0  # the stored version the session in memory is (0: not stored yet)


@dataclass(frozen=True)
class _Before:
    """A session as it was before a turn, to put back if the turn breaks or cannot be written."""

    state: DialogState  # a copy: the same (immutable) entries and turns, in lists of its own
    messages: list
    lines: int  # the chat's length


def throttle(events: Iterable[T], interval_s: float = FRAME_INTERVAL_S) -> Iterator[T]:
    """``events`` with their ``FrameEvent``s at most one every ``interval_s``; a frame held back is
    shown before the next other event, or at the end, so the last frame is never lost."""
    last, pending = float("-inf"), None
    for event in events:
        if isinstance(event, FrameEvent):
            pending = event
            if time.perf_counter() - last >= interval_s:
                yield pending
                last, pending = time.perf_counter(), None
            continue
        if pending is not None:
            yield pending
            last, pending = time.perf_counter(), None
        yield event
    if pending is not None:
        yield pending


class SessionService:
    """Every open session of one process over its shared ``Agent``, written to ``store`` after every turn."""

    def __init__(self, agent: Agent, store: SessionStore, backend: str, max_open: int = MAX_OPEN_SESSIONS,
                 max_running: int = MAX_RUNNING, new_sessions_per_minute: float | None = None):
        self.agent = agent
        # sessions one client (an address) may create a minute, whatever asks: the page, MCP, an API call
        self.new_sessions = RateLimit(new_sessions_per_minute) if new_sessions_per_minute else None
        self.store = store
        self.backend_name = backend  # stored with each session
        self.max_open = max_open
        self.frames = EditPathFrames(agent.editor.backend)  # the edit-path GIFs' frames, drawn once
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()  # opening, restoring, evicting, queueing
        self._slots = threading.BoundedSemaphore(max_running)

    # ----------------------------------------------------------------- open, restore, evict, save

    def ensure(self, session_id: str | None, user: str | None = None, client: str | None = None) -> str:
        """The id of an open session: this one (brought back from the store if needed) or a new one.

        With logins (``user`` given), only the login that created a session opens it: another
        login asking for it gets a new session of its own, which says so. A new session counts
        against ``client``'s allowance (``TooManySessions`` when it is spent)."""
        with self._lock:
            self._evict_idle()
            refused = False
            if valid_session_id(session_id):
                opened = self._open.get(session_id)
                if opened is not None and session_id in self.agent.sessions:
                    if _may_open(opened.owner, user):
                        opened.used = time.time()
                        if not opened.turns.busy:  # a turn saved by another process since
                            self._refresh(session_id)
                        return session_id
                    refused = True
                else:
                    saved = self.store.load(session_id)
                    if saved is not None and _may_open(saved.owner, user):
                        self.agent.restore(saved.id, saved.state, saved.memory)
                        self._open[saved.id] = self._opened(saved.id, list(saved.chat), saved.created, saved.owner,
                                                            saved.version)
                        return saved.id
                    refused = saved is not None
            if refused:
                logger.warning("login %r asked for session %s of another login", user, session_id)
            if self.new_sessions is not None and not self.new_sessions.allow(client or "local"):
                raise TooManySessions(load_feedback().say("limits.new_sessions"))
            # a random face, except on a backend that edits photos: drawing one there costs a text-to-image
            # pass and an inversion (minutes on a CPU) before the person has asked for anything, so it asks for a photo
            photos = self.agent.editor.backend.capabilities.photos
            session, outcome = self.agent.open(draw=not photos)
            self._open[session.id] = self._opened(session.id, [], time.time(), user)
            self._say(session.id, "assistant", (NOT_YOURS + " " if refused else "") + outcome.text
                      + (WELCOME if outcome.image is not None else ""))
            self._show_face(session.id, outcome.image)
            self.save(session.id)
            return session.id

    def _opened(self, session_id: str, chat: list[dict], created: float, owner: str | None,
                version: int = 0) -> _Open:
        turns = TurnQueue(session_id, lambda job: self._run(session_id, job), self._slots, idle=memory.release)
        return _Open(chat, created, time.time(), owner, turns, version)

    def _evict_idle(self) -> None:
        """Keeps at most ``max_open`` sessions in memory, dropping the least recently used idle ones
        (they are all in the store and come back on their next request)."""
        extra = len(self._open) - self.max_open
        if extra < 0:
            return
        for sid in sorted(self._open, key=lambda s: self._open[s].used)[: extra + 1]:
            session = self.agent.sessions.get(sid)
            if self._open[sid].turns.busy or (session is not None and session.lock.locked()):
                continue  # a turn is running or waiting
            self.agent.close(sid)
            del self._open[sid]

    def save(self, session_id: str) -> None:
        """Writes the session (dialog state, the model's memory, the chat) to the store."""
        session = self.agent.session(session_id)
        opened = self._open[session_id]
        saved = SavedSession(session_id, self.backend_name, session.state, session.messages, opened.chat,
                             opened.created, owner=opened.owner, version=opened.version)
        self.store.save(saved)  # SessionConflict when another process saved it since
        opened.version = saved.version

    def _refresh(self, session_id: str) -> None:
        """Brings the session in memory up to the store's copy when another process saved a newer one."""
        opened = self._open[session_id]
        if not self.store.shared or self.store.version(session_id) in (None, opened.version):
            return
        saved = self.store.load(session_id)
        if saved is None:
            return
        session = self.agent.session(session_id)
        vars(session.state).update(vars(saved.state))
        session.messages[:] = saved.memory
        opened.chat[:] = saved.chat
        opened.version = saved.version

    def degrees(self, session_id: str) -> dict[str, int]:
        """The face's degrees as last read (nothing is drawn); empty with no face yet."""
        state = self.agent.session(session_id).state
        return dict(state.current.degrees) if state.has_face else {}

    def idle(self, session_id: str, timeout: float | None = None) -> bool:
        """Waits until the session has no turn running or waiting; False if ``timeout`` passed first."""
        return self._open[session_id].turns.wait(timeout)

    # ----------------------------------------------------------------- the chat

    def chat_log(self, session_id: str) -> tuple[Line, ...]:
        """The conversation as stored, then the person's messages still waiting for their turn."""
        opened = self._open[session_id]
        waiting = tuple(Line("user", job.said, None, waiting=True) for job in opened.turns.waiting)
        return tuple(self._line(m) for m in opened.chat) + waiting

    def _line(self, stored: dict) -> Line:
        image = self.store.absolute(stored["image"]) if stored["image"] else None
        return Line(stored["role"], stored["text"], image, words=stored.get("words"))

    def _say(self, session_id: str, role: str, text: str) -> Said:
        return self._append(session_id, {"role": role, "text": text, "image": None})

    def _show_face(self, session_id: str, image: torch.Tensor | Image.Image | None,
                   role: str = "assistant") -> Said | None:
        if image is None:
            return None
        path = self.store.save_chat_image(session_id, image)
        line = {"role": role, "text": None, "image": self.store.relative(path)}
        if role == "assistant" and (degrees := self.degrees(session_id)):  # the face shown is the one now
            line["words"] = in_words(degrees)
        return self._append(session_id, line)

    def _append(self, session_id: str, stored: dict) -> Said:
        self._open[session_id].chat.append(stored)
        return Said(self._line(stored))

    # ----------------------------------------------------------------- turns

    def intake(self, source: str | Path | Image.Image) -> torch.Tensor:
        """A photo as this backend's face; ``EditError`` with a sentence for the person if refused."""
        return read_photo(self.agent.editor.backend, source)

    def upload(self, session_id: str, file: str | Path, name: str | None = None,
               remove: bool = False) -> Iterator[Event | Said | Queued | Notice]:
        """A photo from the person, queued: the inversion's frames while the backend redraws it, then
        the face and the assistant's words; or a sentence saying why it was refused, the session as it was.
        ``name`` is the file's name as the person knows it; ``remove``: the file is a temporary copy
        (an upload), removed once read."""
        file = Path(file)
        name = name or file.name
        return self._submit(session_id, Job(f"[uploaded {name}]", lambda: self._upload(session_id, file, name, remove),
                                            failed=UPLOAD_FAILED))

    def chat(self, session_id: str, text: str) -> Iterator[Event | Said | Queued | Notice]:
        """A message from the person, queued: its events as the agent runs it (queued at once, whether
        or not they are read; closing them stops nothing)."""
        said = check_text(text).said  # the agent refuses an over-long message; the chat keeps only its first words
        events = lambda: self._turn(session_id, said, self.agent.chat(session_id, text))
        return self._submit(session_id, Job(said, events, failed=TURN_FAILED))

    def act(self, session_id: str, name: str, args: dict, said: str) -> Iterator[Event | Said | Queued | Notice]:
        """A control used instead of words (a slider, a button), queued: the tool ``name`` with
        ``args``; ``said`` is the person's line in the chat and in the model's memory."""
        events = lambda: self._turn(session_id, said, self.agent.act(session_id, name, args, said))
        return self._submit(session_id, Job(said, events, failed=TURN_FAILED))

    def _submit(self, session_id: str, job: Job) -> Iterator[Event | Said | Queued | Notice]:
        with self._lock:  # not evicted between being found and being busy
            opened = self._open[session_id]
            opened.used = time.time()
            listener = opened.turns.submit(job, on_queued=lambda queued: queued.publish(Queued()))
        return iter(listener)

    def _run(self, session_id: str, job: Job) -> None:
        """One turn in the session's worker, its turns in other processes held off meanwhile."""
        try:
            with self.store.turn_lock(session_id):
                self._refresh(session_id)  # a turn another process saved meanwhile comes first
                self._run_turn(session_id, job)
        except StoreError:  # the lock: another process's turn never ended
            logger.exception("session %s is busy in another process", session_id)
            job.publish(Notice(BUSY))

    def _run_turn(self, session_id: str, job: Job) -> None:
        """One turn: its events to its listeners, then the session written; a turn that breaks or
        cannot be written leaves the session as it was before it."""
        # 1. the session as it is, to put back
        session, opened = self.agent.session(session_id), self._open[session_id]
        before = _Before(_copy_state(session.state), list(session.messages), len(opened.chat))
        # 2. the turn, to its end whoever listens
        try:
            for event in job.work():
                job.publish(event)
            _label_new_faces(session.state, before.state, job.said)
        except Exception:  # a bug must not take the session down: say so and keep what was there
            logger.exception("turn failed in session %s", session_id)
            self._roll_back(session_id, before, keep=1)  # the person's line stays, with the apology
            job.publish(self._say(session_id, "assistant", job.failed))
        # 3. written, or undone
        try:
            self.save(session_id)
        except (OSError, StoreError):
            logger.exception("session %s could not be written; its last turn is undone", session_id)
            self._roll_back(session_id, before, keep=0)
            job.publish(Notice(NOT_SAVED))

    def _roll_back(self, session_id: str, before: _Before, keep: int) -> None:
        """Puts the session back as it was before a turn, keeping ``keep`` of the turn's chat lines."""
        session, opened = self.agent.session(session_id), self._open[session_id]
        vars(session.state).update(vars(before.state))
        session.messages[:] = before.messages
        dropped = opened.chat[before.lines + keep:]
        del opened.chat[before.lines + keep:]
        for line in dropped:
            if line["image"]:
                self.store.absolute(line["image"]).unlink(missing_ok=True)

    def _upload(self, session_id: str, file: Path, name: str, remove: bool) -> Iterator[Event | Said]:
        yield self._say(session_id, "user", f"[uploaded {name}]")
        try:
            try:
                picture = read_picture(file)  # checked from its header before it is decoded
            finally:
                if remove:
                    file.unlink(missing_ok=True)
            yield self._show_face(session_id, picture, role="user")  # the photo as sent
            image = face_of(self.agent.editor.backend, picture)
            reply = None
            for event in self.agent.upload_events(session_id, image):  # the model hears of a photo, not a file name
                if isinstance(event, Reply):
                    reply = event
                else:
                    yield event
        except EditError as refusal:
            yield self._say(session_id, "assistant", str(refusal))
            return
        words, face = self._say(session_id, "assistant", reply.text), self._show_face(session_id, reply.image)
        yield reply
        yield words
        if face is not None:
            yield face

    def _turn(self, session_id: str, text: str, events: Iterator[Event]) -> Iterator[Event | Said]:
        yield self._say(session_id, "user", text)
        for event in events:
            said = None  # the chat is written before the event is handed on
            if isinstance(event, ToolEvent) and event.changed:
                said = self._show_face(session_id, event.image)
            elif isinstance(event, Reply):
                said = self._say(session_id, "assistant", event.text)
            yield event
            if said is not None:
                yield said

    # ----------------------------------------------------------------- what a front end shows

    def view(self, session_id: str) -> View:
        """The session as a front end shows it: the face shown and the original in memory, and the
        face shown written once as a PNG to download (named by what it shows): constant work,
        whatever the history."""
        state = self.agent.session(session_id).state
        editor = self.agent.editor
        if not state.has_face:  # a new session on a photo backend, before a photo or a new face
            return View(session_id, self.chat_log(session_id), None, {}, None, None, None, 0, 0)
        image, original = editor.image(state), editor.original_image(state)
        png = self.store.save_image(session_id, image, "face", version=path_key([state.current.latent])[0])
        return View(session_id, self.chat_log(session_id), png, dict(state.current.degrees), to_pil(original),
                    to_pil(image), editor.identity_similarity(state, image, original), state.can_undo(),
                    state.can_redo())

    def _with_face(self, session_id: str) -> DialogState:
        """The session's state; ``EditError`` with a sentence when it has no face yet (nothing to download)."""
        state = self.agent.session(session_id).state
        if not state.has_face:
            raise EditError(load_feedback().say("no_face"))
        return state

    def edit_path_gif(self, session_id: str) -> Path:
        """The face shown's history up to it, as an animated GIF (interpolated in latent space).
        Drawn on request; a frame drawn for an earlier request is not drawn again."""
        state = self._with_face(session_id)
        index = state.index  # read first: ``entries[:index + 1]`` is then a history even if a turn pushes now
        shown = state.entries[: index + 1]
        latents = [e.latent for e in shown if e.face == shown[-1].face]
        version = hashlib.blake2b("".join(path_key(latents)).encode(), digest_size=12).hexdigest()
        out = self.store.images_dir / session_id / f"edit-path-{version}.gif"
        if not out.exists():
            self.frames.write_gif(latents, out)
        os.utime(out)
        self.store.prune_versions(session_id, "edit-path", ".gif")
        return out

    def face_png(self, session_id: str, display: bool = False) -> Path:
        """The face shown as a PNG: at the backend's own resolution, or drawn at display size."""
        state = self._with_face(session_id)
        image = self.agent.editor.image(state)
        version = path_key([state.current.latent])[0]
        if not display:
            return self.store.save_image(session_id, image, "face", version=version)
        return self.store.save_image(session_id, display_size(to_pil(image)), "face_display",
                                     version=version)

    def session_gif(self, session_id: str) -> Path:
        """The whole session as an animated GIF at display size: every face in order (interpolated
        within a person, a cut between people), what made each step written under it. Drawn on
        request; frames drawn before are not drawn again."""
        state = self._with_face(session_id)
        shown = state.entries[: state.index + 1]
        latents = [e.latent for e in shown]
        cuts = frozenset(i for i in range(len(shown) - 1) if shown[i].face != shown[i + 1].face)
        captions = [_caption(e, k) for k, e in enumerate(shown)]
        version = hashlib.blake2b(("".join(path_key(latents)) + "|".join(captions)).encode(), digest_size=12).hexdigest()
        out = self.store.images_dir / session_id / f"session-{version}.gif"
        if not out.exists():
            self.frames.write_gif(latents, out, captions=captions, cuts=cuts, size=DISPLAY_PX)
        os.utime(out)
        self.store.prune_versions(session_id, "session", ".gif")
        return out

    def contact_sheet(self, session_id: str) -> Path:
        """The conversation as a contact sheet (a PNG): each face the chat shows, with the words that
        asked for it under it (as ``chatedit replay`` draws a script's)."""
        stills, asked = [], "start"
        for line in self.chat_log(session_id):
            if line.image is None and line.role == "user" and line.text:
                asked = line.text
            elif line.image is not None and line.role == "assistant":
                with Image.open(line.image) as face:
                    stills.append((face.convert("RGB"), asked))
        sheet = conversation_sheet(stills, cell=192, per_row=min(6, max(1, len(stills))))
        version = hashlib.blake2b(sheet.tobytes(), digest_size=12).hexdigest()
        return self.store.save_image(session_id, sheet, "sheet", version=version)


def _may_open(owner: str | None, user: str | None) -> bool:
    """Without logins the session id is the credential; with them, a session is its creator's."""
    return user is None or owner == user


def _caption(entry: Entry, k: int) -> str:
    """What made a face of the history, for the session GIF: the words that asked for it and what
    changed ('3. "make her smile a little": smiling 1→3'), or only what changed when a control did."""
    if not entry.asked or entry.asked.startswith("["):  # a slider or button: "[slider] Smiling → 3"
        return f"{k + 1}. {entry.action}"
    return f'{k + 1}. "{_excerpt(entry.asked)}": {entry.action}'


def _excerpt(text: str, words: int = 8) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def _label_new_faces(state: DialogState, before: DialogState, said: str) -> None:
    """The faces a turn added to the history carry the person's words for it (the session GIF's captions)."""
    old = {id(e) for e in before.entries}
    state.entries[:] = [e if id(e) in old or e.asked else dataclasses.replace(e, asked=said) for e in state.entries]


def _copy_state(state: DialogState) -> DialogState:
    """A copy of ``state`` to put back later: its lists copied (entries and turns are never changed
    in place, so they are shared: no latent is copied), its small dicts copied whole."""
    out = copy.copy(state)
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, list):
            setattr(out, f.name, list(value))
        elif isinstance(value, dict):
            setattr(out, f.name, copy.deepcopy(value))
    return out


__all__ = ["FRAME_INTERVAL_S", "Line", "Notice", "Queued", "Said", "SessionService", "TooManySessions", "View",
           "read_photo", "throttle"]
