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

import html
import json
import secrets
from dataclasses import dataclass
from typing import Iterator

import gradio as gr

from chatedit.agent import FrameEvent
from chatedit.attributes import MAX_DEGREE, in_words, load_attributes
from chatedit.images import to_pil
from chatedit.intake import check_text
from chatedit.sessions import Line, Notice, Queued, Said, SessionService, TooManySessions, View, throttle
from chatedit.store import SessionStore, valid_session_id

from .images import Frame, InlineImage, InlineImageSlider

# Wide screens: chat | live preview and buttons | sliders and downloads, all above the fold at 1366×768.
# Narrow screens: the preview and buttons come first and stay at the top while the chat scrolls.
# The chat's per-message Share (Spaces only) and its trash icon (it empties the display, not the
# session; Reset and New face start over, undoably) are hidden.
CSS = """
.gradio-container { overflow: clip !important; }  /* not hidden: a scroll box would unstick the preview */
#title h2 { margin: 0; font-size: 1.25em; }
#title p { margin: 0; font-size: 0.9em; }
#chat { height: calc(100vh - 260px) !important; min-height: 300px; }
#chat button[aria-label="Share"], #chat button[title="Share"], #chat button[aria-label="Clear"] { display: none !important; }
#chat .message img { width: 192px; height: 192px; object-fit: contain; }
#chat .message:has(img) { width: fit-content; max-width: 100%; }
#preview { height: min(48vh, 400px) !important; }
#preview img { width: 100%; height: 100%; object-fit: contain; }
#controls .info-text { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
#controls .block { padding-top: 4px; padding-bottom: 4px; }
#status { font-size: 0.85em; }
#face-words { display: none !important; }
.chatedit-echo { display: flex; flex-direction: column; gap: 6px; margin: 8px 0; }
.chatedit-echo .echo-user { align-self: flex-end; max-width: 80%; padding: 8px 12px; border-radius: 12px;
  background: var(--color-accent-soft); }
.chatedit-echo .echo-work { align-self: flex-start; padding: 6px 12px; font-size: 0.9em; opacity: 0.8;
  border: 1px dashed var(--border-color-primary); border-radius: 12px; }
@media (max-width: 760px) {
  #stage { order: -1; position: sticky; top: 0; z-index: 20; background: var(--background-fill-primary); }
  #preview { height: 26vh !important; }
  #chat { height: 38vh !important; min-height: 200px; }
}
"""
BUTTONS = {"undo": {"steps": 1}, "redo": {"steps": 1}, "reset": {}, "new_face": {}}  # tool name → its arguments
# the downloads drawn on request: name → the label of the button that asks for it
DOWNLOADS = {"edit_path": "Edit path (GIF)", "session_gif": "Whole session (GIF)", "sheet": "Contact sheet",
             "png_display": "PNG, display size"}
LISTENERS = 32  # handlers listening to turns at once; the turns themselves are bounded by the session service
KEY_PAUSE_MS = 600  # a slider moved by keys runs its edit once the keys have rested this long


def click_download(name: str) -> str:
    """Once a download is written, the hidden download button under it is pressed for the person."""
    return f"() => {{ const b = document.querySelector('#{_download_id('download', name)}'); if (b) {{ b.click(); }} }}"


# Installed once on page load. Gradio runs a slider's edit when it is let go (``release``: the
# range's pointerup, the number box's blur). Keys never let go: arrows, Home, End and Page keys on a
# range release it once they rest (one edit, for the value where they stopped); Enter in a number
# box leaves it (its edit). The server setting a value releases nothing, so nothing loops.
KEYS = """() => {
  if (window.chateditKeys) { return; }
  window.chateditKeys = true;
  const moves = new Set(['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp', 'PageDown']);
  const timers = new WeakMap();
  document.addEventListener('keyup', (e) => {
    const t = e.target;
    if (!(t instanceof HTMLInputElement) || !t.closest('.chatedit-slider')) { return; }
    if (t.type === 'range' && moves.has(e.key)) {
      clearTimeout(timers.get(t));
      timers.set(t, setTimeout(() => t.dispatchEvent(new PointerEvent('pointerup', {bubbles: true})), PAUSE));
    }
  }, true);
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t instanceof HTMLInputElement && t.type === 'number' && e.key === 'Enter' && t.closest('.chatedit-slider')) {
      e.preventDefault();
      t.blur();
    }
  }, true);
  // Gradio's chat drops a file message's alt text and leaves its image buttons unlabelled: each
  // face's words come from the page's map (#face-words, file name → words, sent with each turn's
  // end); a face newer than the map is the face now, in the preview's alt text
  const label = () => {
    const now = document.querySelector('#preview img')?.alt || '';
    const words = JSON.parse(document.querySelector('#face-words [data-faces]')?.dataset.faces || '{}');
    const faces = [...document.querySelectorAll('#chat .message-row img, #chat .message img')];
    const bot = faces.filter(i => !i.closest('.user-row, .user'));
    faces.forEach(i => {
      const known = words[decodeURIComponent(i.src.split('/').pop().split('?')[0])];
      const want = i.closest('.user-row, .user') ? 'The photo you sent'
        : known ? 'The face: ' + known
        : (i === bot[bot.length - 1] && now.startsWith('The face now') ? now.replace('The face now', 'The face')
           : 'A face from earlier in this conversation');
      if (i.alt !== want) { i.alt = want; }
    });
    const pair = document.querySelectorAll('#before-after img');
    if (pair[0] && !pair[0].alt) { pair[0].alt = 'Before: the face at the start'; }
    if (pair[1] && !pair[1].alt) { pair[1].alt = 'After: the face now'; }
    document.querySelectorAll('button').forEach(b => {
      if (b.getAttribute('aria-label') || b.innerText.trim()) { return; }
      const img = b.querySelector('img');
      if (img) { b.setAttribute('aria-label', 'Show larger: ' + (img.alt || 'the picture')); }
    });
  };
  new MutationObserver(label).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                      attributeFilter: ['src', 'alt']});
  label();
}""".replace("PAUSE", str(KEY_PAUSE_MS))

# Run in the browser as a message is sent, before the request leaves: the person's words and a
# working line show at once (or "waiting" when an edit is still running) and the box empties. The
# echo is the page's own element, removed as soon as the chat draws the server's answer (the same
# words and line, kept). Attached files stay in the box until the server takes them.
ECHO = """(message, session) => {
  const sent = JSON.parse(JSON.stringify(message || {}));
  const text = (sent.text || '').trim();
  const wrap = document.querySelector('#chat .message-wrap');
  if (text && wrap) {
    wrap.querySelectorAll('.chatedit-echo').forEach(e => e.remove());
    const words = text.split(/\\s+/);
    const shown = words.slice(0, WORDS).join(' ') + (words.length > WORDS ? ' …' : '');
    const busy = [...wrap.querySelectorAll('.message')].some(m => m.innerText.includes('Working on: '));
    const echo = document.createElement('div');
    echo.className = 'chatedit-echo';
    echo.setAttribute('aria-live', 'polite');
    const mine = document.createElement('div');
    mine.className = 'echo-user';
    mine.textContent = shown;
    const line = document.createElement('div');
    line.className = 'echo-work';
    line.textContent = busy ? '(waiting for the edit before it)' : 'Working on: ' + shown + '…  starting…';
    echo.append(mine, line);
    wrap.append(echo);
    wrap.parentElement.scrollTop = wrap.parentElement.scrollHeight;
    // gone once the chat itself shows the message (a late redraw of the turn before does not count)
    const start = words.slice(0, 3).join(' ');
    const inChat = () => [...wrap.querySelectorAll('[data-testid="user"]')]
      .filter(m => !echo.contains(m) && m.innerText.trim().startsWith(start)).length;
    const before = inChat();
    const gone = new MutationObserver(() => {
      if (inChat() > before) { echo.remove(); gone.disconnect(); }
    });
    gone.observe(wrap, {childList: true, subtree: true, characterData: true});
    setTimeout(() => { echo.remove(); gone.disconnect(); }, 30000);
    const box = document.querySelector('#message textarea');
    if (box) { box.value = ''; box.dispatchEvent(new Event('input', {bubbles: true})); }
  }
  return [sent, session];
}""".replace("WORDS", "12")


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
    png: gr.DownloadButton  # the face at the backend's resolution, written every turn
    downloads: dict[str, gr.DownloadButton]  # by name (``DOWNLOADS``), once made; hidden after every turn
    makers: dict[str, gr.Button]  # the buttons that ask for them
    before_after: gr.ImageSlider
    status: gr.Markdown
    face_words: gr.HTML  # hidden: each chat face's words by file name, for its alt text (``KEYS``)

    @property
    def gif(self) -> gr.DownloadButton:
        """The edit-path GIF's download."""
        return self.downloads["edit_path"]

    @property
    def outputs(self) -> list:
        """Every component a handler may change."""
        return [self.session, self.chatbot, self.preview, *self.sliders.values(), self.before_after, self.png,
                *self.downloads.values(), self.status, self.face_words]


class ChatEditApp:
    """The page's handlers: each turns the session service's events and views into component values."""

    def __init__(self, sessions: SessionService, config: ServeConfig, widgets: Widgets):
        self.sessions = sessions
        self.config = config
        self.widgets = widgets
        self.attributes = {a.name: a for a in load_attributes()}
        self.labels = {a.name: a.label for a in self.attributes.values()}

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
        """A message from the box: text, an image, or both (the image first). The page empties the
        box of text as it sends (``ECHO``); a photo leaves the box as the message is taken (not when
        its turn ends, nor text typed meanwhile: either would wipe what comes next)."""
        session_id = self.ensure(session_id, request)
        text, files = _message_parts(message)
        emptied = {self.widgets.box: gr.MultimodalTextbox(value=None)} if files else {}
        if self.sessions.idle(session_id, timeout=0) and (text or files):
            # the person's words (as the chat will keep them: an over-long message only as its first
            # words) and the working line at once, before the turn's worker reports
            shown = check_text(text).said if text else ""
            said = shown if not files else f"your photo{' and: ' + shown if shown else ''}"
            emptied[self.widgets.chatbot] = self.chat_messages(session_id) + [
                {"role": "user", "content": shown or "[uploading a photo]"}, Work(said).message()]
        if emptied:  # (an empty dict would read as one output's value)
            yield emptied
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
        if target != self.sessions.degrees(session_id).get(attribute):  # no face yet: the agent says so
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

    def download(self, name: str, session_id: str | None, request: gr.Request | None = None) -> dict:
        """A download (``DOWNLOADS``), drawn now (only what was not drawn before), ready to save."""
        session_id = self.ensure(session_id, request)
        make = {"edit_path": self.sessions.edit_path_gif, "session_gif": self.sessions.session_gif,
                "sheet": self.sessions.contact_sheet,
                "png_display": lambda s: self.sessions.face_png(s, display=True)}[name]
        return {self.widgets.downloads[name]: gr.DownloadButton(value=str(make(session_id)), visible=True)}

    def edit_path(self, session_id: str | None, request: gr.Request | None = None) -> dict:
        """The edit-path GIF, drawn now (only the frames not drawn before), ready to download."""
        return self.download("edit_path", session_id, request)

    # ----------------------------------------------------------------- translation

    def _stream(self, session_id: str, events: Iterator, notices: list[str]) -> Iterator[dict]:
        """Frames into the live preview while a photo is redrawn or an edit walks; the chat as it
        grows, with a working line under the person's words while their turn runs (a message still
        waiting for its turn shows at once, marked); ``notices`` collects what is said outside the
        conversation (a turn undone)."""
        work: Work | None = None  # the turn's working line, from its first line of the chat to its reply
        for event in throttle(events):
            if isinstance(event, FrameEvent):
                if work is not None:
                    work = work.on(event, self.attributes)
                alt = "Live preview: " + (work.progress if work is not None else "the face being drawn")
                out = {self.widgets.preview: gr.update(value=Frame(to_pil(event.image)), alt_text=alt)}
                if work is not None and work.changed:
                    out[self.widgets.chatbot] = self.chat_messages(session_id, notices, work)
                yield out
            elif isinstance(event, (Said, Queued, Notice)):
                if isinstance(event, Notice):
                    notices.append(event.text)
                elif isinstance(event, Said) and event.line.role == "user" and event.line.text and work is None:
                    work = Work(event.line.text)  # the turn has started: its words are in the chat
                elif isinstance(event, Said) and event.line.role == "assistant" and event.line.text:
                    work = None  # the reply: the turn is over
                yield {self.widgets.chatbot: self.chat_messages(session_id, notices, work)}

    def view(self, session_id: str, notices: list[str] = ()) -> dict:
        """The components a turn may change, once it is over (the downloads drawn on request are
        hidden until asked for again)."""
        view, w = self.sessions.view(session_id), self.widgets
        words = self.describe(view.degrees) if view.after is not None else "no face yet: send a photo"
        return {w.session: view.session_id, w.chatbot: _messages(view.chat, notices, last_face=words),
                w.preview: gr.update(value=view.after, alt_text=f"The face now: {words}"),
                **{slider: view.degrees.get(name, 0) for name, slider in w.sliders.items()},
                w.before_after: (view.before, view.after) if view.after is not None else None,
                w.png: str(view.image) if view.image is not None else None,
                **{d: gr.DownloadButton(value=None, visible=False) for d in w.downloads.values()},
                w.status: self._status(view), w.face_words: _face_words(view.chat)}

    def describe(self, degrees: dict[str, int]) -> str:
        """A face's degrees in words: "a gentle smile, no glasses, …" (the alt text of its pictures)."""
        return in_words(degrees)

    def chat_messages(self, session_id: str, notices: list[str] = (), work: Work | None = None) -> list[dict]:
        return _messages(self.sessions.chat_log(session_id), notices, work=work)

    def _status(self, view: View) -> str:
        identity = ("same person: not measured (no identity model)" if view.identity is None else
                    f"looks like the same person: {view.identity:.2f} (1 = identical)")
        return (f"**Backend** `{self.config.backend}` · **language model** `{self.config.llm}` · "
                f"{identity} · {view.undo} undo, {view.redo} redo · session `{view.session_id[:8]}`")


# --------------------------------------------------------------------------- widgets


@dataclass(frozen=True)
class Work:
    """The working line under the person's words while their turn runs: what is being done, how far."""

    said: str
    progress: str = "starting…"
    frames: int = 0
    changed: bool = True  # the line reads differently since the last frame

    def on(self, frame: FrameEvent, attributes: dict) -> Work:
        """The line after ``frame``."""
        if frame.inversion:
            progress = f"redrawing your photo, step {frame.step}"
        elif frame.attribute in attributes and frame.attribute in frame.degrees:
            attribute = attributes[frame.attribute]
            degree = frame.degrees[frame.attribute]
            progress = f"{attribute.label.lower()} now {degree} of {MAX_DEGREE} ({attribute.degrees[degree]})"
        else:
            progress = self.progress
        frames = self.frames + 1
        return Work(self.said, progress, frames, progress != self.progress or frames % 5 == 0)

    def message(self) -> dict:
        frames = f" · {self.frames} frame{'s' if self.frames != 1 else ''} so far" if self.frames else ""
        return {"role": "assistant", "content": f"{self.progress}{frames}",
                "metadata": {"title": f"Working on: {_short(self.said)}…", "status": "pending"}}


def _short(text: str, words: int = 12) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def _messages(chat: tuple[Line, ...], notices: list[str] = (), work: Work | None = None,
              last_face: str | None = None) -> list[dict]:
    """The chat as the Chatbot takes it, with the working line (``work``) after the lines of the
    turn under way and before those still waiting; then ``notices``, shown once and not part of
    the conversation. ``last_face``: the words for the last face's alt text."""
    last = max((i for i, line in enumerate(chat) if line.image is not None and line.role == "assistant"), default=-1)
    messages = [_message(line, last_face if i == last else None) for i, line in enumerate(chat)]
    if work is not None:
        waiting = next((i for i, line in enumerate(chat) if line.waiting), len(chat))
        messages.insert(waiting, work.message())
    return messages + [{"role": "assistant", "content": text} for text in notices]


def _message(line: Line, words: str | None = None) -> dict:
    """Text (a message still waiting for its turn marked so), or a picture's file with its alt text."""
    if line.image is not None:
        words = words or line.words
        if line.role == "user":
            alt = "The photo you sent"
        else:
            alt = f"The face: {words}" if words else "A face from earlier in this conversation"
        return {"role": line.role, "content": {"path": str(line.image), "mime_type": "image/png", "alt_text": alt}}
    if line.waiting:
        return {"role": line.role, "content": f"{line.text}  \n*(waiting for the edit before it)*"}
    return {"role": line.role, "content": line.text}


def _face_words(chat: tuple[Line, ...]) -> str:
    """The chat faces' words by file name, as the page's hidden map the alt texts are set from."""
    words = {line.image.name: line.words for line in chat if line.image is not None and line.words}
    return f'<div data-faces="{html.escape(json.dumps(words))}"></div>'


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
                    f"Backend **{config.backend}**, language model **{config.llm}**.", elem_id="title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                chatbot = gr.Chatbot(label="Conversation", elem_id="chat", buttons=["copy", "copy_all"])
                box = gr.MultimodalTextbox(placeholder="Tell me what to change, or drop a photo here…",
                                           file_types=["image"], file_count="single", show_label=False,
                                           elem_id="message", sources=["upload"])
                status = gr.Markdown(elem_id="status")
                face_words = gr.HTML(elem_id="face-words", container=False, padding=False)
            with gr.Column(scale=3, min_width=300, elem_id="stage"):
                preview = InlineImage(label="Live preview", interactive=False, elem_id="preview",
                                      buttons=["fullscreen"], alt_text="The face being edited")
                with gr.Row():
                    buttons = {name: gr.Button(label, elem_id=name.replace("_", "-"), size="sm", min_width=60)
                               for name, label in (("undo", "Undo"), ("redo", "Redo"), ("reset", "Reset"),
                                                   ("new_face", "New face"))}
            with gr.Column(scale=3, min_width=300, elem_id="controls"):
                sliders = {a.name: gr.Slider(0, MAX_DEGREE, step=1, value=0, label=f"{a.label} (0–{MAX_DEGREE})",
                                             info=" · ".join(f"{i} {d}" for i, d in enumerate(a.degrees)),
                                             elem_id=f"slider-{a.name}", elem_classes=["chatedit-slider"],
                                             buttons=[]) for a in attributes}
                with gr.Row():
                    png = gr.DownloadButton("Download PNG", elem_id="download-png", size="sm")
                    makers = {name: gr.Button(label, elem_id=_download_id("make", name), size="sm")
                              for name, label in DOWNLOADS.items()}
                    downloads = {name: gr.DownloadButton(f"Save {label}", elem_id=_download_id("download", name),
                                                         visible=False, size="sm") for name, label in DOWNLOADS.items()}
                before_after = InlineImageSlider(label="Before / after", interactive=False, elem_id="before-after",
                                                 max_height=320)

        widgets = Widgets(session, chatbot, box, preview, sliders, buttons, png, downloads, makers, before_after,
                          status, face_words)
        app = ChatEditApp(sessions, config, widgets)
        # handlers only listen to the turns the session service runs (it bounds how many edits run at
        # once); every message and control is taken, even while an edit runs
        # the page's handlers take component payloads: in Gradio's API, not listed (nor as MCP tools)
        hidden = dict(api_visibility="undocumented")
        edits = dict(outputs=widgets.outputs, concurrency_id="edits", concurrency_limit=LISTENERS,
                     show_progress="hidden", trigger_mode="multiple", **hidden)

        page.load(app.start, inputs=[session], outputs=widgets.outputs, api_name="start", concurrency_id="pages",
                  concurrency_limit=None, **hidden)
        page.load(None, js=KEYS, api_name=False)
        box.submit(app.send, inputs=[box, session], js=ECHO, api_name="send", **{**edits, "outputs": [*widgets.outputs, box]})
        for name, slider in sliders.items():
            slider.release(_slider_handler(app, name), inputs=[slider, session], api_name=f"slider_{name}", **edits)
        for name, button in buttons.items():
            button.click(_button_handler(app, name), inputs=[session], api_name=name, **edits)
        for name, maker in makers.items():
            maker.click(_download_handler(app, name), inputs=[session], outputs=[downloads[name]],
                        api_name="edit_path_gif" if name == "edit_path" else name, concurrency_id="downloads",
                        concurrency_limit=1, **hidden).then(None, js=click_download(name), api_name=False)
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


def _download_handler(app: ChatEditApp, name: str):
    """``app.download`` for one download (and hand the login)."""
    def handler(session_id: str | None, request: gr.Request) -> dict:
        return app.download(name, session_id, request)
    handler.__name__ = f"download_{name}"
    return handler


def _download_id(kind: str, name: str) -> str:
    """The element id of a download's button: ``make-gif`` and ``download-gif`` for the edit path."""
    return f"{kind}-{'gif' if name == 'edit_path' else name.replace('_', '-')}"


def _browser_secret(store: SessionStore) -> str:
    """The key the browser's stored session id is sealed with; kept on disk so restarts can read it."""
    path = store.data_dir / "browser-secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()
