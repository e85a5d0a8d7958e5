"""Sessions, once for every front end: open, restore, evict, persist, photo intake, downloads.

The page (``chatedit serve``), ``chatedit chat`` and ``chatedit replay`` are front ends over
this module. A ``SessionService`` holds the process's one ``Agent`` and ``SessionStore`` and, for
each open session, the chat as it is stored (lines of text and faces saved as PNG files). Its
streams (``upload``, ``chat``, ``act``) yield the agent's events as they come, plus a ``Said``
each time the chat grows, and write the session to the store when the turn ends; ``view``
gives what a front end shows for a session as plain data.

Photo intake is ``read_photo``: open the file, let the backend find and align the face, and turn
every refusal into an ``EditError`` whose message is a sentence for the person.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import torch
from PIL import Image, UnidentifiedImageError

from chatedit.agent import Agent, Event, FrameEvent, Reply, ToolEvent
from chatedit.editor import EditError
from chatedit.feedback import load_feedback
from chatedit.images import to_pil
from chatedit.store import SavedSession, SessionStore, valid_session_id
from chatedit.tools.align import NoFaceFound
from chatedit.tools.backend import Backend

logger = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.04  # at most ~25 preview updates a second; the last frame is always shown
GIF_MAX_FRAMES = 150
DISPLAY_SIZE = 384  # side of the before/after images (the comparison widget crops small ones)
MAX_OPEN_SESSIONS = 200  # sessions kept in memory; the others wait in the store
WELCOME = " Tell me what to change, move a slider, or upload a photo of your own."
TURN_FAILED = "Something went wrong on my side; the face was left as it was."
UPLOAD_FAILED = "Something went wrong on my side with that photo."

T = TypeVar("T")


@dataclass(frozen=True)
class Line:
    """One line of the chat: words, or a face (an absolute path to its PNG)."""

    role: str  # "user" or "assistant"
    text: str | None
    image: Path | None


@dataclass(frozen=True)
class Said:
    """The chat grew by ``line`` (the person's words, a face, a reply or a refusal)."""

    line: Line


@dataclass(frozen=True)
class View:
    """What a front end shows for a session, the files already written."""

    session_id: str
    chat: tuple[Line, ...]
    image: Path  # the face shown, as a PNG: the "Download PNG" file
    degrees: dict[str, int]
    before: Path  # the original face and the face shown, enlarged for a side-by-side comparison
    after: Path
    gif: Path  # the face's edit path, animated
    identity: float | None  # how much the face shown is still the original person; None: no identity model
    undo: int
    redo: int


@dataclass
class _Open:
    """An open session's own bookkeeping beside the agent's ``Session``."""

    chat: list[dict]  # as stored: {"role", "text", "image"}, image relative to the data dir
    created: float
    used: float  # when it was last asked for
    gif_key: tuple | None = None  # the history the edit-path GIF on disk shows


def read_photo(backend: Backend, source: str | Path | Image.Image) -> torch.Tensor:
    """A photo (a file or an open picture) as the backend's aligned face (3, H, W) in [0, 1].

    Raises ``EditError`` with a sentence for the person when it is not an image or shows no face.
    """
    feedback = load_feedback()
    name = "the picture" if isinstance(source, Image.Image) else Path(source).name
    try:
        if isinstance(source, Image.Image):
            return backend.intake(source)
        with Image.open(source) as picture:
            picture.load()
            return backend.intake(picture)
    except NoFaceFound:
        raise EditError(feedback.say("upload.face_not_found")) from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise EditError(feedback.say("upload.not_image", name=name)) from error


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

    def __init__(self, agent: Agent, store: SessionStore, backend: str, max_open: int = MAX_OPEN_SESSIONS):
        self.agent = agent
        self.store = store
        self.backend_name = backend  # stored with each session
        self.max_open = max_open
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()  # opening, restoring and evicting

    # ----------------------------------------------------------------- open, restore, evict, save

    def ensure(self, session_id: str | None) -> str:
        """The id of an open session: this one (brought back from the store if needed) or a new one."""
        with self._lock:
            self._evict_idle()
            if valid_session_id(session_id):
                if session_id in self.agent.sessions and session_id in self._open:
                    self._open[session_id].used = time.time()
                    return session_id
                saved = self.store.load(session_id)
                if saved is not None:
                    self.agent.restore(saved.id, saved.state, saved.memory)
                    self._open[saved.id] = _Open(list(saved.chat), saved.created, time.time())
                    return saved.id
            session, outcome = self.agent.open()  # a random built-in face
            self._open[session.id] = _Open([], time.time(), time.time())
            self._say(session.id, "assistant", outcome.text + WELCOME)
            self._show_face(session.id, outcome.image)
            self.save(session.id)
            return session.id

    def _evict_idle(self) -> None:
        """Keeps at most ``max_open`` sessions in memory, dropping the least recently used idle ones
        (they are all in the store and come back on their next request)."""
        extra = len(self._open) - self.max_open
        if extra < 0:
            return
        for sid in sorted(self._open, key=lambda s: self._open[s].used)[: extra + 1]:
            session = self.agent.sessions.get(sid)
            if session is not None and session.lock.locked():
                continue  # a turn is running
            self.agent.close(sid)
            del self._open[sid]

    def save(self, session_id: str) -> None:
        """Writes the whole session (dialog state, the model's memory, the chat) to the store."""
        session = self.agent.session(session_id)
        opened = self._open[session_id]
        self.store.save(SavedSession(session_id, self.backend_name, session.state, session.messages, opened.chat,
                                     opened.created))

    def degrees(self, session_id: str) -> dict[str, int]:
        """The face's degrees as last read (nothing is drawn)."""
        return dict(self.agent.session(session_id).state.current.degrees)

    # ----------------------------------------------------------------- the chat

    def chat_log(self, session_id: str) -> tuple[Line, ...]:
        return tuple(self._line(m) for m in self._open[session_id].chat)

    def _line(self, stored: dict) -> Line:
        image = self.store.absolute(stored["image"]) if stored["image"] else None
        return Line(stored["role"], stored["text"], image)

    def _say(self, session_id: str, role: str, text: str) -> Said:
        return self._append(session_id, {"role": role, "text": text, "image": None})

    def _show_face(self, session_id: str, image: torch.Tensor | None) -> Said | None:
        if image is None:
            return None
        chat = self._open[session_id].chat
        n = sum(1 for m in chat if m["image"]) + 1
        path = self.store.save_image(session_id, image, f"chat-{n:04d}")
        return self._append(session_id, {"role": "assistant", "text": None, "image": self.store.relative(path)})

    def _append(self, session_id: str, stored: dict) -> Said:
        self._open[session_id].chat.append(stored)
        return Said(self._line(stored))

    # ----------------------------------------------------------------- photos and turns

    def intake(self, source: str | Path | Image.Image) -> torch.Tensor:
        """A photo as this backend's face; ``EditError`` with a sentence for the person if refused."""
        return read_photo(self.agent.editor.backend, source)

    def upload(self, session_id: str, file: str | Path) -> Iterator[Event | Said]:
        """A photo from the person: the inversion's frames while the backend redraws it, then the
        face and the assistant's words; or a sentence saying why it was refused, the session as it was."""
        return self._saved_at_end(session_id, self._upload(session_id, Path(file)))

    def chat(self, session_id: str, text: str) -> Iterator[Event | Said]:
        """A message from the person, as the agent runs it."""
        return self._saved_at_end(session_id, self._turn(session_id, text, self.agent.chat(session_id, text)))

    def act(self, session_id: str, name: str, args: dict, said: str) -> Iterator[Event | Said]:
        """A control used instead of words (a slider, a button): the tool ``name`` with ``args``;
        ``said`` is the person's line in the chat and in the model's memory."""
        return self._saved_at_end(session_id, self._turn(session_id, said,
                                                         self.agent.act(session_id, name, args, said)))

    def _upload(self, session_id: str, file: Path) -> Iterator[Event | Said]:
        yield self._say(session_id, "user", f"[uploaded {file.name}]")
        try:
            image = self.intake(file)
        except EditError as refusal:
            yield self._say(session_id, "assistant", str(refusal))
            return
        reply = None
        try:
            for event in self.agent.upload_events(session_id, image):  # the model hears of a photo, not a file name
                if isinstance(event, Reply):
                    reply = event
                else:
                    yield event
        except EditError as error:
            yield self._say(session_id, "assistant", str(error))
            return
        except Exception:  # a bug must not take the session down
            logger.exception("upload failed in session %s", session_id)
            yield self._say(session_id, "assistant", UPLOAD_FAILED)
            return
        words, face = self._say(session_id, "assistant", reply.text), self._show_face(session_id, reply.image)
        yield reply
        yield words
        if face is not None:
            yield face

    def _turn(self, session_id: str, text: str, events: Iterator[Event]) -> Iterator[Event | Said]:
        yield self._say(session_id, "user", text)
        try:
            for event in events:
                said = None  # the chat is written before the event is handed on
                if isinstance(event, ToolEvent) and event.changed:
                    said = self._show_face(session_id, event.image)
                elif isinstance(event, Reply):
                    said = self._say(session_id, "assistant", event.text)
                yield event
                if said is not None:
                    yield said
        except Exception:  # a bug must not take the session down: say so and keep what was there
            logger.exception("turn failed in session %s", session_id)
            yield self._say(session_id, "assistant", TURN_FAILED)

    def _saved_at_end(self, session_id: str, events: Iterator[T]) -> Iterator[T]:
        """``events``, then the session written to the store, even when the reader stops early."""
        try:
            yield from events
        finally:
            self.save(session_id)

    # ----------------------------------------------------------------- what a front end shows

    def view(self, session_id: str) -> View:
        """The session as a front end shows it. Writes the downloads: the face shown as a PNG, the
        before/after pair and the edit-path GIF (drawn again only when the history changed)."""
        state = self.agent.session(session_id).state
        editor = self.agent.editor
        image, original = editor.image(state), editor.original_image(state)  # each drawn once
        current = self.store.save_image(session_id, image, "current")
        before = self.store.save_image(session_id, _enlarge(original), "before")
        after = self.store.save_image(session_id, _enlarge(image), "after")
        return View(session_id, self.chat_log(session_id), current, dict(state.current.degrees), before, after,
                    self.edit_path_gif(session_id), editor.identity_similarity(state, image, original),
                    state.can_undo(), state.can_redo())

    def edit_path_gif(self, session_id: str) -> Path:
        """The current face's history up to the face shown, as an animated GIF (interpolated in
        latent space); drawn again only when that history changed."""
        state = self.agent.session(session_id).state
        face = state.current.face
        path = [e.latent for e in state.entries[: state.index + 1] if e.face == face]
        key = (len(state.entries), state.index, face)
        out = self.store.images_dir / session_id / "edit-path.gif"
        opened = self._open[session_id]
        if opened.gif_key == key and out.exists():
            return out
        backend = self.agent.editor.backend
        per_step = backend.capabilities.gif_frames_per_step
        latents = [path[0]]
        for a, b in zip(path, path[1:]):
            latents += [torch.lerp(a, b, t / per_step) for t in range(1, per_step + 1)]
        if len(latents) > GIF_MAX_FRAMES:
            keep = torch.linspace(0, len(latents) - 1, GIF_MAX_FRAMES).round().long().tolist()
            latents = [latents[i] for i in keep]
        with torch.no_grad():
            frames = [to_pil(backend.generate(w.to(backend.device))[0]) for w in latents]
        durations = [60 if per_step > 1 else 500] * len(frames)
        durations[0] = durations[-1] = 800  # linger on the start and the end
        out.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0)
        opened.gif_key = key
        return out


def _enlarge(image: torch.Tensor, size: int = DISPLAY_SIZE) -> torch.Tensor:
    """A face scaled up (3, size, size) for the comparison view."""
    return torch.nn.functional.interpolate(image[None].float(), size=(size, size), mode="bicubic",
                                           align_corners=False)[0].clamp(0, 1)


__all__ = ["FRAME_INTERVAL_S", "Line", "Said", "SessionService", "View", "read_photo", "throttle"]
