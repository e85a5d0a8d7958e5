"""The chat page (``chatedit serve``): talk to a face, watch each edit happen, keep every session.

One process holds one ``Agent`` (its backend and chat model are loaded once and shared
read-only) and one ``SessionStore``. Every browser session has its own dialog state in the
agent, keyed by a session id the browser keeps in its local storage (or that a link carries as
``?session=…``); after every turn the whole session is written to the store, so a reload or a
server restart brings it back.

Every control goes through the agent: a message, a slider moved, a button pressed. While an
edit walks, its frames stream into the live preview; when the turn ends, the chat gets the new
face and the assistant's words, and the sliders, downloads and before/after follow. An uploaded
photo streams the same way: its reconstruction forms in the live preview while the backend
inverts it, then the face joins the chat.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gradio as gr
import torch
from PIL import Image, UnidentifiedImageError

from chatedit.agent import Agent, FrameEvent, Reply, ToolEvent
from chatedit.attributes import MAX_DEGREE, load_attributes
from chatedit.editor import EditError
from chatedit.feedback import load_feedback
from chatedit.images import to_pil
from chatedit.store import SavedSession, SessionStore, valid_session_id
from chatedit.tools.align import NoFaceFound

logger = logging.getLogger(__name__)

FRAME_INTERVAL_S = 0.04  # at most ~25 preview updates a second; the last frame is always shown
GIF_FRAMES_PER_STEP = 6
GIF_MAX_FRAMES = 150
DISPLAY_SIZE = 384
MAX_OPEN_SESSIONS = 200  # sessions kept in memory; the others wait in the store

# the faces are 128 px: let the browser scale them up to fill their frames instead of leaving a stamp
CSS = """
#preview img { width: 100%; height: 100%; object-fit: contain; }
#chat .message img { min-width: 192px; }
#status { font-size: 0.9em; }
"""


@dataclass(frozen=True)
class ServeConfig:
    backend: str = "builtin"
    llm: str = "rules"
    concurrency: int = 2  # edits running at once on the backend; page loads never wait for them
    max_upload_mb: float = 10.0


class ChatEditApp:
    """The page's behaviour, independent of the widgets: each handler returns the page's new view."""

    def __init__(self, agent: Agent, store: SessionStore, config: ServeConfig = ServeConfig()):
        self.agent = agent
        self.store = store
        self.config = config
        self.attributes = load_attributes()
        self.feedback = load_feedback()
        self._chats: dict[str, list[dict]] = {}  # session id → the chat as stored (text and image files)
        self._created: dict[str, float] = {}
        self._used: dict[str, float] = {}  # session id → when it was last asked for
        self._open_lock = threading.Lock()
        self._gif_cache: dict[str, tuple] = {}

    # ----------------------------------------------------------------- sessions

    def ensure(self, session_id: str | None) -> str:
        """The id of an open session: this one (reopened from the store if needed) or a new one."""
        with self._open_lock:
            self._evict_idle()
            if valid_session_id(session_id):
                if session_id in self.agent.sessions and session_id in self._chats:
                    self._used[session_id] = time.time()
                    return session_id
                saved = self.store.load(session_id)
                if saved is not None:
                    self.agent.restore(saved.id, saved.state, saved.memory)
                    self._chats[saved.id] = list(saved.chat)
                    self._created[saved.id] = saved.created
                    self._used[saved.id] = time.time()
                    return saved.id
            session, outcome = self.agent.open()  # a random built-in face
            self._used[session.id] = time.time()
            self._chats[session.id] = []
            self._created[session.id] = time.time()
            self._say(session.id, "assistant", outcome.text + " Tell me what to change, move a slider, or upload "
                                                              "a photo of your own.")
            self._show_face(session.id, outcome.image)
            self._save(session.id)
            return session.id

    def _evict_idle(self) -> None:
        """Keeps at most ``MAX_OPEN_SESSIONS`` in memory, dropping the least recently used idle ones
        (they are all in the store and come back on their next request)."""
        extra = len(self._used) - MAX_OPEN_SESSIONS
        if extra < 0:
            return
        for sid in sorted(self._used, key=self._used.get)[: extra + 1]:
            session = self.agent.sessions.get(sid)
            if session is not None and session.lock.locked():
                continue  # a turn is running
            self.agent.close(sid)
            for table in (self._chats, self._created, self._used, self._gif_cache):
                table.pop(sid, None)

    def _save(self, session_id: str) -> None:
        session = self.agent.session(session_id)
        self.store.save(SavedSession(session_id, self.config.backend, session.state, session.messages,
                                     self._chats[session_id], self._created.get(session_id, 0.0)))

    def _say(self, session_id: str, role: str, text: str) -> None:
        self._chats[session_id].append({"role": role, "text": text, "image": None})

    def _show_face(self, session_id: str, image: torch.Tensor | None) -> None:
        if image is None:
            return
        n = sum(1 for m in self._chats[session_id] if m["image"]) + 1
        path = self.store.save_image(session_id, image, f"chat-{n:04d}")
        self._chats[session_id].append({"role": "assistant", "text": None, "image": self.store.relative(path)})

    # ----------------------------------------------------------------- the view

    def view(self, session_id: str) -> tuple:
        """Everything the page shows for a session, in the order of ``App.outputs``."""
        state = self.agent.session(session_id).state
        editor = self.agent.editor
        image, original = editor.image(state), editor.original_image(state)
        current = self.store.save_image(session_id, image, "current")  # the download: the face itself
        before = self.store.save_image(session_id, _enlarge(original), "before")
        after = self.store.save_image(session_id, _enlarge(image), "after")
        degrees = state.current.degrees
        similarity = editor.identity_similarity(state, image, original)
        identity = "identity: no model" if similarity is None else f"identity kept {similarity:.2f}"
        status = (f"**Backend** `{self.config.backend}` · **language model** `{self.config.llm}` · "
                  f"{identity} · {state.can_undo()} undo, {state.can_redo()} redo · "
                  f"session `{session_id[:8]}`")
        return (session_id, self.chat_messages(session_id), str(current),
                *[degrees[a.name] for a in self.attributes],
                (str(before), str(after)), str(current), str(self.edit_path_gif(session_id)), status)

    def chat_messages(self, session_id: str) -> list[dict]:
        messages = []
        for m in self._chats[session_id]:
            if m["image"]:
                messages.append({"role": m["role"], "content": {"path": str(self.store.absolute(m["image"])),
                                                                "mime_type": "image/png"}})
            else:
                messages.append({"role": m["role"], "content": m["text"]})
        return messages

    def edit_path_gif(self, session_id: str) -> Path:
        """The current face's history up to the face shown, as an animated GIF (interpolated in latent space)."""
        state = self.agent.session(session_id).state
        face = state.current.face
        path = [e.latent for e in state.entries[: state.index + 1] if e.face == face]
        key = (len(state.entries), state.index, face)
        out = self.store.images_dir / session_id / "edit-path.gif"
        if self._gif_cache.get(session_id) == key and out.exists():
            return out
        backend = self.agent.editor.backend
        per_step = getattr(backend, "gif_frames_per_step", GIF_FRAMES_PER_STEP)  # diffusion: 1, each a whole pass
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
        self._gif_cache[session_id] = key
        return out

    # ----------------------------------------------------------------- handlers

    def start(self, session_id: str | None, request: gr.Request | None = None):
        """Page load: the session in the link, else the one the browser remembers, else a new one."""
        linked = request.query_params.get("session") if request is not None else None
        session_id = self.ensure(linked if valid_session_id(linked) else session_id)
        return self.view(session_id)

    def send(self, message: dict | str | None, session_id: str | None) -> Iterator[tuple]:
        """A message from the box: text, an image, or both (the image first)."""
        session_id = self.ensure(session_id)
        text, files = _message_parts(message)
        if not text and not files:
            yield self.view(session_id)
            return
        for file in files:
            yield from self._upload(session_id, file)
        if text:
            self._say(session_id, "user", text)
            yield from self._stream(session_id, self.agent.chat(session_id, text))
        else:
            self._save(session_id)
            yield self.view(session_id)

    def slider(self, attribute: str, value: float, session_id: str | None) -> Iterator[tuple]:
        session_id = self.ensure(session_id)
        target = int(round(float(value)))
        current = self.agent.session(session_id).state.current.degrees[attribute]
        if target == current:
            yield self.view(session_id)
            return
        label = next(a.label for a in self.attributes if a.name == attribute)
        said = f"[slider] {label} → {target}"
        self._say(session_id, "user", said)
        yield from self._stream(session_id, self.agent.act(
            session_id, "edit_attribute", {"attribute": attribute, "target": target}, said))

    def button(self, name: str, session_id: str | None) -> Iterator[tuple]:
        session_id = self.ensure(session_id)
        args = {"undo": {"steps": 1}, "redo": {"steps": 1}, "reset": {}, "new_face": {}}[name]
        said = f"[{name.replace('_', ' ')}]"
        self._say(session_id, "user", said)
        yield from self._stream(session_id, self.agent.act(session_id, name, args, said))

    def _upload(self, session_id: str, file: str) -> Iterator[tuple]:
        """A photo from the message box: its reconstruction forms in the live preview while the
        backend inverts it, then the face joins the chat; or a sentence says why it was refused and
        the session stays as it was (the preview goes back to the face with the next full view)."""
        name = Path(file).name
        self._say(session_id, "user", f"[uploaded {name}]")
        try:
            with Image.open(file) as picture:
                picture.load()
                image = self.agent.editor.backend.intake(picture)
        except NoFaceFound:
            self._say(session_id, "assistant", self.feedback.say("upload.face_not_found"))
            return
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            self._say(session_id, "assistant", self.feedback.say("upload.not_image", name=name))
            return
        yield self._preview_only(gr.skip(), self.chat_messages(session_id))  # the person's line, at once
        last, pending, reply = 0.0, None, None
        try:
            # the model hears of a photo, never of a file name
            for event in self.agent.upload_events(session_id, image):
                if isinstance(event, FrameEvent):
                    pending = event
                    if time.perf_counter() - last >= FRAME_INTERVAL_S:
                        yield self._preview_only(to_pil(event.image), gr.skip())
                        last, pending = time.perf_counter(), None
                elif isinstance(event, Reply):
                    reply = event
        except EditError as error:
            self._say(session_id, "assistant", str(error))
            return
        except Exception:  # a bug must not take the session down
            logger.exception("upload failed in session %s", session_id)
            self._say(session_id, "assistant", "Something went wrong on my side with that photo.")
            return
        if pending is not None:  # the last reconstruction held back by the frame interval
            yield self._preview_only(to_pil(pending.image), gr.skip())
        self._say(session_id, "assistant", reply.text)
        self._show_face(session_id, reply.image)

    def _stream(self, session_id: str, events: Iterator) -> Iterator[tuple]:
        """Frames into the preview while the edit runs; the full view once the turn is over."""
        yield self._preview_only(gr.skip(), self.chat_messages(session_id))
        last = 0.0
        pending = None
        try:
            for event in events:
                if isinstance(event, FrameEvent):
                    pending = event
                    if time.perf_counter() - last >= FRAME_INTERVAL_S:
                        yield self._preview_only(to_pil(event.image), gr.skip())
                        last, pending = time.perf_counter(), None
                elif isinstance(event, ToolEvent):
                    if pending is not None:
                        yield self._preview_only(to_pil(pending.image), gr.skip())
                        pending = None
                    if event.changed and event.image is not None:
                        self._show_face(session_id, event.image)
                elif isinstance(event, Reply):
                    self._say(session_id, "assistant", event.text)
        except Exception:  # a bug must not take the session down: say so and keep what was there
            logger.exception("turn failed in session %s", session_id)
            self._say(session_id, "assistant", "Something went wrong on my side; the face was left as it was.")
        self._save(session_id)
        yield self.view(session_id)

    def _preview_only(self, preview, chat) -> tuple:
        skip = gr.skip()
        return (skip, chat, preview, *[skip] * len(self.attributes), skip, skip, skip, skip)


# --------------------------------------------------------------------------- widgets


def _enlarge(image: torch.Tensor, size: int = DISPLAY_SIZE) -> torch.Tensor:
    """A face scaled up for the comparison view (its widget crops small images instead of scaling them)."""
    return torch.nn.functional.interpolate(image[None].float(), size=(size, size), mode="bicubic",
                                           align_corners=False)[0].clamp(0, 1)


def _message_parts(message: dict | str | None) -> tuple[str, list[str]]:
    if message is None:
        return "", []
    if isinstance(message, str):
        return message.strip(), []
    files = [f if isinstance(f, str) else f.get("path", "") for f in message.get("files") or []]
    return (message.get("text") or "").strip(), [f for f in files if f]


def build_page(app: ChatEditApp) -> gr.Blocks:
    cfg = app.config
    with gr.Blocks(title="ChatEdit", delete_cache=(3600, 3600)) as page:
        session = gr.BrowserState("", storage_key="chatedit-session", secret=_browser_secret(app.store))
        gr.Markdown(f"## ChatEdit\nTalk to the face: *\"make her smile a little\"*, *\"a bit more\"*, "
                    f"*\"add thin glasses\"*, *\"make him look forty\"*, *\"undo\"*. "
                    f"Backend **{cfg.backend}**, language model **{cfg.llm}**.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chat", buttons=["copy", "copy_all"])
                box = gr.MultimodalTextbox(placeholder="Tell me what to change, or drop a photo here…",
                                           file_types=["image"], file_count="single", show_label=False,
                                           elem_id="message", sources=["upload"])
            with gr.Column(scale=2):
                preview = gr.Image(label="Live preview", type="filepath", height=384, interactive=False,
                                   elem_id="preview", format="png", buttons=["fullscreen"])
                sliders = [gr.Slider(0, MAX_DEGREE, step=1, value=0, label=f"{a.label} (0–{MAX_DEGREE})",
                                     info=" · ".join(f"{i} {d}" for i, d in enumerate(a.degrees)),
                                     elem_id=f"slider-{a.name}") for a in app.attributes]
                with gr.Row():
                    undo = gr.Button("Undo", elem_id="undo")
                    redo = gr.Button("Redo", elem_id="redo")
                    reset = gr.Button("Reset", elem_id="reset")
                    new_face = gr.Button("New face", elem_id="new-face")
                with gr.Row():
                    png = gr.DownloadButton("Download PNG", elem_id="download-png")
                    gif = gr.DownloadButton("Download edit path (GIF)", elem_id="download-gif")
                before_after = gr.ImageSlider(label="Before / after", type="filepath",
                                              interactive=False, elem_id="before-after")
                status = gr.Markdown(elem_id="status")

        outputs = [session, chatbot, preview, *sliders, before_after, png, gif, status]
        edits = dict(outputs=outputs, concurrency_id="edits", concurrency_limit=cfg.concurrency,
                     show_progress="hidden")

        page.load(app.start, inputs=[session], outputs=outputs, api_name="start", concurrency_id="pages",
                  concurrency_limit=None)
        box.submit(app.send, inputs=[box, session], api_name="send", **edits).then(
            lambda: gr.MultimodalTextbox(value=None), outputs=[box], api_name=False)
        for attribute, slider in zip(app.attributes, sliders):
            slider.release(_bind(app.slider, attribute.name), inputs=[slider, session],
                           api_name=f"slider_{attribute.name}", **edits)
        for name, button in (("undo", undo), ("redo", redo), ("reset", reset), ("new_face", new_face)):
            button.click(_bind(app.button, name), inputs=[session], api_name=name, **edits)
    return page


def _bind(fn, first):
    """``fn`` with its first argument fixed, as a generator Gradio can stream from."""
    def handler(*args):
        yield from fn(first, *args)
    handler.__name__ = f"{fn.__name__}_{first}"
    return handler


def _browser_secret(store: SessionStore) -> str:
    """The key the browser's stored session id is sealed with; kept on disk so restarts can read it."""
    path = store.data_dir / "browser-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
