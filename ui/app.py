"""The chat page (``chatedit serve``): talk to a face, watch each edit happen, keep every session.

A thin front end over ``chatedit.sessions.SessionService``, which opens, restores, evicts and
stores the sessions, takes in photos and writes the downloads. Every browser session is keyed by
a session id the browser keeps in its local storage (or that a link carries as ``?session=…``).

Every control goes through the agent: a message, a slider moved, a button pressed. While an
edit walks, its frames stream into the live preview; when the turn ends, the chat gets the new
face and the assistant's words, and the sliders, downloads and before/after follow. An uploaded
photo streams the same way: its reconstruction forms in the live preview while the backend
inverts it, then the face joins the chat. Handlers return ``{component: value}`` for the
components that change; the others stay as they are.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Iterator

import gradio as gr

from chatedit.agent import FrameEvent
from chatedit.attributes import MAX_DEGREE, load_attributes
from chatedit.images import to_pil
from chatedit.sessions import Line, Said, SessionService, View, throttle
from chatedit.store import SessionStore, valid_session_id

# the faces are 128 px: let the browser scale them up to fill their frames instead of leaving a stamp
CSS = """
#preview img { width: 100%; height: 100%; object-fit: contain; }
#chat .message img { min-width: 192px; }
#status { font-size: 0.9em; }
"""
BUTTONS = {"undo": {"steps": 1}, "redo": {"steps": 1}, "reset": {}, "new_face": {}}  # tool name → its arguments


@dataclass(frozen=True)
class ServeConfig:
    backend: str = "builtin"
    llm: str = "rules"
    concurrency: int = 2  # edits running at once on the backend; page loads never wait for them
    max_upload_mb: float = 10.0


@dataclass(frozen=True)
class Widgets:
    """The page's components; handlers return ``{component: value}`` for those that change."""

    session: gr.BrowserState
    chatbot: gr.Chatbot
    box: gr.MultimodalTextbox
    preview: gr.Image
    sliders: dict[str, gr.Slider]  # by attribute name
    buttons: dict[str, gr.Button]  # by tool name (``BUTTONS``)
    png: gr.DownloadButton
    gif: gr.DownloadButton
    before_after: gr.ImageSlider
    status: gr.Markdown

    @property
    def outputs(self) -> list:
        """Every component a handler may change."""
        return [self.session, self.chatbot, self.preview, *self.sliders.values(), self.before_after, self.png,
                self.gif, self.status]


class ChatEditApp:
    """The page's handlers: each turns the session service's events and views into component values."""

    def __init__(self, sessions: SessionService, config: ServeConfig, widgets: Widgets):
        self.sessions = sessions
        self.config = config
        self.widgets = widgets
        self.labels = {a.name: a.label for a in load_attributes()}

    # ----------------------------------------------------------------- handlers

    def start(self, session_id: str | None, request: gr.Request | None = None) -> dict:
        """Page load: the session in the link, else the one the browser remembers, else a new one."""
        linked = request.query_params.get("session") if request is not None else None
        return self.view(self.sessions.ensure(linked if valid_session_id(linked) else session_id))

    def send(self, message: dict | str | None, session_id: str | None) -> Iterator[dict]:
        """A message from the box: text, an image, or both (the image first)."""
        session_id = self.sessions.ensure(session_id)
        text, files = _message_parts(message)
        for file in files:
            yield from self._stream(session_id, self.sessions.upload(session_id, file))
        if text:
            yield from self._stream(session_id, self.sessions.chat(session_id, text))
        yield self.view(session_id)

    def slider(self, attribute: str, value: float, session_id: str | None) -> Iterator[dict]:
        session_id = self.sessions.ensure(session_id)
        target = int(round(float(value)))
        if target != self.sessions.degrees(session_id)[attribute]:
            said = f"[slider] {self.labels[attribute]} → {target}"
            yield from self._stream(session_id, self.sessions.act(
                session_id, "edit_attribute", {"attribute": attribute, "target": target}, said))
        yield self.view(session_id)

    def button(self, name: str, session_id: str | None) -> Iterator[dict]:
        session_id = self.sessions.ensure(session_id)
        said = f"[{name.replace('_', ' ')}]"
        yield from self._stream(session_id, self.sessions.act(session_id, name, BUTTONS[name], said))
        yield self.view(session_id)

    # ----------------------------------------------------------------- translation

    def _stream(self, session_id: str, events: Iterator) -> Iterator[dict]:
        """Frames into the live preview while a photo is redrawn or an edit walks; the chat as it grows."""
        for event in throttle(events):
            if isinstance(event, FrameEvent):
                yield {self.widgets.preview: to_pil(event.image)}
            elif isinstance(event, Said):
                yield {self.widgets.chatbot: self.chat_messages(session_id)}

    def view(self, session_id: str) -> dict:
        """Every component for a session once a turn is over."""
        view, w = self.sessions.view(session_id), self.widgets
        return {w.session: view.session_id, w.chatbot: _messages(view.chat), w.preview: str(view.image),
                **{slider: view.degrees[name] for name, slider in w.sliders.items()},
                w.before_after: (str(view.before), str(view.after)), w.png: str(view.image), w.gif: str(view.gif),
                w.status: self._status(view)}

    def chat_messages(self, session_id: str) -> list[dict]:
        return _messages(self.sessions.chat_log(session_id))

    def _status(self, view: View) -> str:
        identity = "identity: no model" if view.identity is None else f"identity kept {view.identity:.2f}"
        return (f"**Backend** `{self.config.backend}` · **language model** `{self.config.llm}` · "
                f"{identity} · {view.undo} undo, {view.redo} redo · session `{view.session_id[:8]}`")


# --------------------------------------------------------------------------- widgets


def _messages(chat: tuple[Line, ...]) -> list[dict]:
    """The chat as the Chatbot takes it: text, or a face's file."""
    return [{"role": line.role, "content": {"path": str(line.image), "mime_type": "image/png"}} if line.image
            else {"role": line.role, "content": line.text} for line in chat]


def _message_parts(message: dict | str | None) -> tuple[str, list[str]]:
    if message is None:
        return "", []
    if isinstance(message, str):
        return message.strip(), []
    files = [f if isinstance(f, str) else f.get("path", "") for f in message.get("files") or []]
    return (message.get("text") or "").strip(), [f for f in files if f]


def build_page(sessions: SessionService, config: ServeConfig = ServeConfig()) -> tuple[gr.Blocks, ChatEditApp]:
    """The page and its handlers over ``sessions``."""
    attributes = load_attributes()
    with gr.Blocks(title="ChatEdit", delete_cache=(3600, 3600)) as page:
        session = gr.BrowserState("", storage_key="chatedit-session", secret=_browser_secret(sessions.store))
        gr.Markdown(f"## ChatEdit\nTalk to the face: *\"make her smile a little\"*, *\"a bit more\"*, "
                    f"*\"add thin glasses\"*, *\"make him look forty\"*, *\"undo\"*. "
                    f"Backend **{config.backend}**, language model **{config.llm}**.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chat", buttons=["copy", "copy_all"])
                box = gr.MultimodalTextbox(placeholder="Tell me what to change, or drop a photo here…",
                                           file_types=["image"], file_count="single", show_label=False,
                                           elem_id="message", sources=["upload"])
            with gr.Column(scale=2):
                preview = gr.Image(label="Live preview", type="filepath", height=384, interactive=False,
                                   elem_id="preview", format="png", buttons=["fullscreen"])
                sliders = {a.name: gr.Slider(0, MAX_DEGREE, step=1, value=0, label=f"{a.label} (0–{MAX_DEGREE})",
                                             info=" · ".join(f"{i} {d}" for i, d in enumerate(a.degrees)),
                                             elem_id=f"slider-{a.name}") for a in attributes}
                with gr.Row():
                    buttons = {name: gr.Button(label, elem_id=name.replace("_", "-")) for name, label in
                               (("undo", "Undo"), ("redo", "Redo"), ("reset", "Reset"), ("new_face", "New face"))}
                with gr.Row():
                    png = gr.DownloadButton("Download PNG", elem_id="download-png")
                    gif = gr.DownloadButton("Download edit path (GIF)", elem_id="download-gif")
                before_after = gr.ImageSlider(label="Before / after", type="filepath",
                                              interactive=False, elem_id="before-after")
                status = gr.Markdown(elem_id="status")

        widgets = Widgets(session, chatbot, box, preview, sliders, buttons, png, gif, before_after, status)
        app = ChatEditApp(sessions, config, widgets)
        edits = dict(outputs=widgets.outputs, concurrency_id="edits", concurrency_limit=config.concurrency,
                     show_progress="hidden")

        page.load(app.start, inputs=[session], outputs=widgets.outputs, api_name="start", concurrency_id="pages",
                  concurrency_limit=None)
        box.submit(app.send, inputs=[box, session], api_name="send", **edits).then(
            lambda: gr.MultimodalTextbox(value=None), outputs=[box], api_name=False)
        for name, slider in sliders.items():
            slider.release(_bind(app.slider, name), inputs=[slider, session], api_name=f"slider_{name}", **edits)
        for name, button in buttons.items():
            button.click(_bind(app.button, name), inputs=[session], api_name=name, **edits)
    return page, app


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
