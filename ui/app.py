"""The chat page (``chatedit serve``): talk to a face, watch each edit happen, keep every session.

A thin front end over ``chatedit.sessions.SessionService``, which opens, restores, evicts and
stores the sessions, takes in photos and writes the downloads. Every browser session is keyed by
a session id the browser keeps in its local storage (or that a link carries as ``?session=…``).

Every control goes through the agent: a message, a slider moved, a button pressed. Each is
queued in the session (``SessionService``) and runs there to its end; the handler only listens,
so a tab closed or reloaded mid-edit stops nothing, and a message sent while an edit runs shows
at once as waiting and is answered after it. While an edit walks, its frames stream into the
live preview; when the turn ends, the chat gets the new face and the assistant's words, and the
sliders, downloads and before/after follow. An uploaded photo streams the same way: its
reconstruction forms in the live preview while the backend inverts it, then the face joins the
chat. The edit-path GIF is drawn only when asked for. Handlers return ``{component: value}`` for
the components that change; the others stay as they are.

With ``--auth``, every handler passes the login (``request.username``) so a session opens only
for the login that created it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Iterator

import gradio as gr

from chatedit.agent import FrameEvent
from chatedit.attributes import MAX_DEGREE, load_attributes
from chatedit.feedback import load_feedback
from chatedit.images import to_pil
from chatedit.sessions import Line, Notice, Queued, Said, SessionService, TooManySessions, View, throttle
from chatedit.store import SessionStore, valid_session_id

from .images import DISPLAY_PX, InlineImage, InlineImageSlider

# the faces are 128 px: let the browser scale them up to fill their frames instead of leaving a stamp
CSS = """
#preview img { width: 100%; height: 100%; object-fit: contain; }
#chat .message img { min-width: 192px; }
#status { font-size: 0.9em; }
"""
BUTTONS = {"undo": {"steps": 1}, "redo": {"steps": 1}, "reset": {}, "new_face": {}}  # tool name → its arguments
LISTENERS = 32  # handlers listening to turns at once; the turns themselves are bounded by the session service
# once the GIF is written, the hidden download button under it is pressed for the person
CLICK_GIF = "() => { const b = document.querySelector('#download-gif'); if (b) { b.click(); } }"


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
    gif: gr.DownloadButton  # the edit-path GIF, once made (``make_gif``); hidden after every turn
    make_gif: gr.Button
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
        wanted = linked if valid_session_id(linked) else session_id
        return self.view(self.ensure(wanted, request))

    def ensure(self, session_id: str | None, request: gr.Request | None) -> str:
        """The session a request names, opened for its login; a new one within its address's allowance."""
        try:
            return self.sessions.ensure(session_id, _user(request), _client(request))
        except TooManySessions as refused:
            raise gr.Error(str(refused), print_exception=False) from None

    def send(self, message: dict | str | None, session_id: str | None,
             request: gr.Request | None = None) -> Iterator[dict]:
        """A message from the box: text, an image, or both (the image first). The box is emptied as
        the message is taken (not when its turn ends: that would wipe what is typed meanwhile)."""
        yield {self.widgets.box: gr.MultimodalTextbox(value=None)}
        session_id = self.ensure(session_id, request)
        text, files = _message_parts(message)
        # all queued now, in order; Gradio's copy of an upload is removed once read (the chat keeps the photo)
        turns = [self.sessions.upload(session_id, file, remove=_uploaded(file)) for file in files]
        if text:
            turns.append(self.sessions.chat(session_id, text))
        notices: list[str] = []
        for events in turns:
            yield from self._stream(session_id, events, notices)
        yield self.view(session_id, notices)

    def slider(self, attribute: str, value: float, session_id: str | None,
               request: gr.Request | None = None) -> Iterator[dict]:
        session_id = self.ensure(session_id, request)
        target = int(round(float(value)))
        notices: list[str] = []
        if target != self.sessions.degrees(session_id)[attribute]:
            said = f"[slider] {self.labels[attribute]} → {target}"
            yield from self._stream(session_id, self.sessions.act(
                session_id, "edit_attribute", {"attribute": attribute, "target": target}, said), notices)
        yield self.view(session_id, notices)

    def button(self, name: str, session_id: str | None, request: gr.Request | None = None) -> Iterator[dict]:
        session_id = self.ensure(session_id, request)
        said = f"[{name.replace('_', ' ')}]"
        notices: list[str] = []
        yield from self._stream(session_id, self.sessions.act(session_id, name, BUTTONS[name], said), notices)
        yield self.view(session_id, notices)

    def edit_path(self, session_id: str | None, request: gr.Request | None = None) -> dict:
        """The edit-path GIF, drawn now (only the frames not drawn before), ready to download."""
        session_id = self.ensure(session_id, request)
        gif = self.sessions.edit_path_gif(session_id)
        return {self.widgets.gif: gr.DownloadButton(value=str(gif), visible=True)}

    # ----------------------------------------------------------------- translation

    def _stream(self, session_id: str, events: Iterator, notices: list[str]) -> Iterator[dict]:
        """Frames into the live preview while a photo is redrawn or an edit walks; the chat as it
        grows (a message still waiting for its turn shows at once, marked); ``notices`` collects
        what is said outside the conversation (a turn undone)."""
        for event in throttle(events):
            if isinstance(event, FrameEvent):
                yield {self.widgets.preview: to_pil(event.image)}
            elif isinstance(event, (Said, Queued, Notice)):
                if isinstance(event, Notice):
                    notices.append(event.text)
                yield {self.widgets.chatbot: self.chat_messages(session_id, notices)}

    def view(self, session_id: str, notices: list[str] = ()) -> dict:
        """The components a turn may change, once it is over (the GIF's download is hidden until
        asked for again)."""
        view, w = self.sessions.view(session_id), self.widgets
        return {w.session: view.session_id, w.chatbot: _messages(view.chat, notices), w.preview: view.after,
                **{slider: view.degrees[name] for name, slider in w.sliders.items()},
                w.before_after: (view.before, view.after), w.png: str(view.image),
                w.gif: gr.DownloadButton(value=None, visible=False), w.status: self._status(view)}

    def chat_messages(self, session_id: str, notices: list[str] = ()) -> list[dict]:
        return _messages(self.sessions.chat_log(session_id), notices)

    def _status(self, view: View) -> str:
        identity = "identity: no model" if view.identity is None else f"identity kept {view.identity:.2f}"
        return (f"**Backend** `{self.config.backend}` · **language model** `{self.config.llm}` · "
                f"{identity} · {view.undo} undo, {view.redo} redo · session `{view.session_id[:8]}`")


# --------------------------------------------------------------------------- widgets


def _messages(chat: tuple[Line, ...], notices: list[str] = ()) -> list[dict]:
    """The chat as the Chatbot takes it; then ``notices``, shown once and not part of the conversation."""
    return [_message(line) for line in chat] + [{"role": "assistant", "content": text} for text in notices]


def _message(line: Line) -> dict:
    """Text (a message still waiting for its turn marked so), or a face's file."""
    if line.image is not None:
        return {"role": line.role, "content": {"path": str(line.image), "mime_type": "image/png"}}
    if line.waiting:
        return {"role": line.role, "content": f"{line.text}  \n*(waiting for the edit before it)*"}
    return {"role": line.role, "content": line.text}


def _client(request: gr.Request | None) -> str:
    """The address a request came from ("local" when called in-process)."""
    return request.client.host if request is not None and request.client is not None else "local"


def _user(request: gr.Request | None) -> str | None:
    """The login (``--auth``), or None: without logins the session id is the credential."""
    return request.username if request is not None else None


def _uploaded(file: str) -> bool:
    """Whether ``file`` is Gradio's temporary copy of an upload."""
    return gr.utils.is_in_or_equal(file, gr.utils.get_upload_folder())


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
    # the session's files (chat faces, downloads) are served where they are, not copied to Gradio's
    # temp folder first: each is named after what it shows, so a page never sees an older picture
    gr.set_static_paths([sessions.store.images_dir])
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
                preview = InlineImage(label="Live preview", height=DISPLAY_PX, interactive=False, elem_id="preview",
                                      buttons=["fullscreen"])
                sliders = {a.name: gr.Slider(0, MAX_DEGREE, step=1, value=0, label=f"{a.label} (0–{MAX_DEGREE})",
                                             info=" · ".join(f"{i} {d}" for i, d in enumerate(a.degrees)),
                                             elem_id=f"slider-{a.name}") for a in attributes}
                with gr.Row():
                    buttons = {name: gr.Button(label, elem_id=name.replace("_", "-")) for name, label in
                               (("undo", "Undo"), ("redo", "Redo"), ("reset", "Reset"), ("new_face", "New face"))}
                with gr.Row():
                    png = gr.DownloadButton("Download PNG", elem_id="download-png")
                    make_gif = gr.Button("Edit path (GIF)", elem_id="make-gif")
                    gif = gr.DownloadButton("Download GIF", elem_id="download-gif", visible=False)
                before_after = InlineImageSlider(label="Before / after", interactive=False, elem_id="before-after")
                status = gr.Markdown(elem_id="status")

        widgets = Widgets(session, chatbot, box, preview, sliders, buttons, png, gif, make_gif, before_after, status)
        app = ChatEditApp(sessions, config, widgets)
        # handlers only listen to the turns the session service runs (it bounds how many edits run at
        # once); every message and control is taken, even while an edit runs
        # the page's handlers take component payloads: in Gradio's API, not listed (nor as MCP tools)
        hidden = dict(api_visibility="undocumented")
        edits = dict(outputs=widgets.outputs, concurrency_id="edits", concurrency_limit=LISTENERS,
                     show_progress="hidden", trigger_mode="multiple", **hidden)

        page.load(app.start, inputs=[session], outputs=widgets.outputs, api_name="start", concurrency_id="pages",
                  concurrency_limit=None, **hidden)
        box.submit(app.send, inputs=[box, session], api_name="send", **{**edits, "outputs": [*widgets.outputs, box]})
        for name, slider in sliders.items():
            slider.release(_slider_handler(app, name), inputs=[slider, session], api_name=f"slider_{name}", **edits)
        for name, button in buttons.items():
            button.click(_button_handler(app, name), inputs=[session], api_name=name, **edits)
        make_gif.click(app.edit_path, inputs=[session], outputs=[gif], api_name="edit_path_gif",
                       concurrency_id="gifs", concurrency_limit=1, **hidden).then(None, js=CLICK_GIF, api_name=False)
    return page, app


def _slider_handler(app: ChatEditApp, attribute: str):
    """``app.slider`` for one attribute, as a generator Gradio can stream from (and hand the login)."""
    def handler(value: float, session_id: str | None, request: gr.Request) -> Iterator[dict]:
        yield from app.slider(attribute, value, session_id, request)
    handler.__name__ = f"slider_{attribute}"
    return handler


def _button_handler(app: ChatEditApp, name: str):
    """``app.button`` for one button, as a generator Gradio can stream from (and hand the login)."""
    def handler(session_id: str | None, request: gr.Request) -> Iterator[dict]:
        yield from app.button(name, session_id, request)
    handler.__name__ = f"button_{name}"
    return handler


def _browser_secret(store: SessionStore) -> str:
    """The key the browser's stored session id is sealed with; kept on disk so restarts can read it."""
    path = store.data_dir / "browser-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
