"""The agent: the standard LangChain tool-calling loop over one session's tools, streaming frames.

For each message: the chat model (with the tools bound) answers with ``AIMessage.tool_calls``;
each call runs as a tool bound to this session and comes back as a ``ToolMessage``; the model
sees the results and answers in words. The loop works with any LangChain chat model; the
built-in one is ``RulesChatModel``.

``Agent.chat`` is a generator of events: a ``FrameEvent`` for every frame of an edit while the
edit runs, a ``ToolEvent`` per finished call, then one ``Reply``. ``Agent.upload_events`` streams
an uploaded photo the same way: ``FrameEvent``s marked ``inversion`` while the backend inverts
it, then the ``Reply``. A turn runs to its end even when its reader closes the generator early
(the rest runs unseen): a face never changes without its turn log and memory. Sessions are keyed
by id and hold only their own state and messages; the editor and its models are shared, read-only.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Callable, Generator, Iterator, TypeVar

import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from chatedit.attributes import load_attributes
from chatedit.editor import EditError, Editor, Outcome
from chatedit.feedback import load_feedback
from chatedit.state import DialogState, Turn
from chatedit.toolkit import make_tools
from chatedit.tools.backend import BackendError

if TYPE_CHECKING:
    from chatedit.llms import LLMSettings

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 2000
T = TypeVar("T")


@dataclass(frozen=True)
class FrameEvent:
    call_id: str
    attribute: str
    step: int
    image: torch.Tensor  # (3, H, W) in [0, 1]
    degrees: dict[str, int]  # as read on this frame; empty for a preview or an inversion's frame
    preview: bool = False  # an image drawn on the way to a frame (a diffusion pass forming), not a walk step
    inversion: bool = False  # an uploaded photo's reconstruction forming (``step``: the inversion's), not an edit


@dataclass(frozen=True)
class ToolEvent:
    call_id: str
    name: str
    args: dict
    text: str
    ok: bool
    changed: bool
    image: torch.Tensor | None  # the face after the call, when it changed


@dataclass(frozen=True)
class Reply:
    text: str
    image: torch.Tensor | None  # the face shown at the end of the turn
    degrees: dict[str, int]
    calls: list[dict]  # {"name", "args", "ok"} in the order they ran


Event = FrameEvent | ToolEvent | Reply


@dataclass
class Session:
    id: str
    state: DialogState = field(default_factory=DialogState)
    messages: list[BaseMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@lru_cache(maxsize=1)
def _system_template() -> tuple[str, str]:
    template = resources.files("chatedit.prompts").joinpath("system.md").read_text()
    scales = "\n".join(f"- {a.name}: " + "; ".join(f"{i} {d}" for i, d in enumerate(a.degrees))
                       for a in load_attributes())
    return template, scales


def system_prompt(state: DialogState) -> str:
    """The system message: what the assistant can do, and the session's state as JSON."""
    template, scales = _system_template()
    snapshot = {
        "degrees": dict(state.current.degrees) if state.has_face else None,
        "earlier": state.earlier_degrees() if state.has_face else None,
        "focus": state.focus, "last_change": state.last_change, "question": state.question,
        "can_undo": state.can_undo(), "can_redo": state.can_redo(),
    }
    return template.format(scales=scales, state=json.dumps(snapshot))


class Agent:
    def __init__(self, editor: Editor, llm: BaseChatModel, max_rounds: int = 4, memory_turns: int = 12,
                 fallback: BaseChatModel | None = None, max_tool_calls: int = 8, max_repairs: int = 2,
                 turn_timeout_s: float = 120.0):
        self.editor = editor
        self.llm = llm
        self.fallback = fallback  # answers a turn when ``llm`` fails
        self.max_rounds = max_rounds  # model calls per turn
        self.max_tool_calls = max_tool_calls  # tool calls run per turn; more are refused
        self.max_repairs = max_repairs  # failed tool calls the model may repair before the turn ends
        # the language model's own time per turn (tools' time does not count: a long edit is shown by its
        # frames and reported by its result); no new model call starts once it is spent
        self.turn_timeout_s = turn_timeout_s
        self.memory_turns = memory_turns
        self.sessions: dict[str, Session] = {}

    # ----------------------------------------------------------------- sessions

    def open(self, session_id: str | None = None, seed: int | None = None,
             image: torch.Tensor | None = None, draw: bool = True) -> tuple[Session, Outcome]:
        """A new session with its first face: ``image`` (3, H, W) if given, else a generated one. With
        ``draw`` off and no ``image`` it starts with no face and nothing is drawn: its outcome asks for a
        photo (a new face is drawn when asked for)."""
        session = Session(session_id or uuid.uuid4().hex)
        if session.id in self.sessions:
            raise ValueError(f"session {session.id!r} is already open")
        session.state.seed = seed if seed is not None else secrets.randbelow(2**31)
        if image is not None:
            outcome = self.editor.upload(session.state, image)
        elif draw:
            outcome = self.editor.new_face(session.state, seed)
        else:
            outcome = Outcome(load_feedback().say("greeting_photo"), False, None)
        self.sessions[session.id] = session
        return session, outcome

    def restore(self, session_id: str, state: DialogState, messages: list[BaseMessage]) -> Session:
        """Puts a saved session back (after a page reload or a server restart)."""
        if session_id in self.sessions:
            return self.sessions[session_id]
        session = Session(session_id, state, list(messages))
        self.sessions[session_id] = session
        return session

    def upload(self, session_id: str, image: torch.Tensor, said: str = "[uploaded a photo]") -> Reply:
        """Starts the session's next face from a photo (3, H, W); refused photos change nothing.

        Raises ``EditError`` with a sentence for the person when the photo cannot be used.
        """
        reply = None
        for event in self.upload_events(session_id, image, said):
            if isinstance(event, Reply):
                reply = event
        return reply

    def upload_events(self, session_id: str, image: torch.Tensor,
                      said: str = "[uploaded a photo]") -> Iterator[FrameEvent | Reply]:
        """``upload`` as it runs: a ``FrameEvent`` (``inversion=True``, no degrees) for each
        reconstruction the backend shows while it inverts the photo, then the ``Reply``.

        Raises ``EditError`` when the photo cannot be used, possibly after some frames (a photo the
        backend redraws too poorly is refused once inverted); the session is then as it was.
        """
        session = self.session(session_id)
        with session.lock:
            frames: queue.Queue = queue.Queue()
            call_id = f"upload_{uuid.uuid4().hex[:12]}"

            def on_progress(step: int, reconstruction: torch.Tensor) -> None:
                frames.put(FrameEvent(call_id, "", step, reconstruction, {}, inversion=True))

            def work() -> Reply:  # the whole upload, so it completes even if no one reads the frames
                outcome = self.editor.upload(session.state, image, on_progress=on_progress)
                session.messages.extend([HumanMessage(said), AIMessage(outcome.text)])
                reply = self._reply(session.state, outcome.text, [])
                session.state.turns.append(Turn(said, [], outcome.text, dict(reply.degrees)))
                return reply

            yield (yield from _while_streaming(work, frames, name="upload"))

    def close(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    def session(self, session_id: str) -> Session:
        if session_id not in self.sessions:
            raise KeyError(f"no open session {session_id!r}")
        return self.sessions[session_id]

    # ----------------------------------------------------------------- a turn

    def respond(self, session_id: str, text: str) -> Reply:
        """Runs a whole turn and returns its reply (frames are dropped)."""
        reply = None
        for event in self.chat(session_id, text):
            if isinstance(event, Reply):
                reply = event
        return reply

    def chat(self, session_id: str, text: str) -> Iterator[Event]:
        session = self.session(session_id)
        with session.lock:  # one turn at a time per session; other sessions run freely
            yield from _to_the_end(self._turn(session, text))

    def act(self, session_id: str, name: str, args: dict, said: str) -> Iterator[Event]:
        """Runs one tool call the person made with a control (a slider, a button) instead of words.

        It goes through the same tools as a chat turn and is remembered as one: ``said`` (e.g.
        "[slider] smiling → 3") is the person's line, the call and its result follow it, so the
        language model knows what happened when the conversation goes on.
        """
        session = self.session(session_id)
        with session.lock:
            yield from _to_the_end(self._turn(session, said, scripted={"name": name, "args": dict(args),
                                                                       "id": f"ui_{uuid.uuid4().hex[:12]}"}))

    def _turn(self, session: Session, text: str, scripted: dict | None = None) -> Iterator[Event]:
        state = session.state
        # 1. refuse what cannot be a request, leaving everything as it was
        if not isinstance(text, str) or not text.strip():
            yield self._reply(state, "Please type what you would like to change.", [])
            return
        if len(text) > MAX_MESSAGE_CHARS:
            yield self._reply(state, f"That message is {len(text)} characters long; please keep requests under "
                                     f"{MAX_MESSAGE_CHARS}.", [])
            return

        # 2. the conversation so far, the session's state, the new message
        frames: queue.Queue = queue.Queue()
        current_call: dict = {}

        def on_frame(frame) -> None:
            frames.put(FrameEvent(current_call.get("id", ""), current_call.get("attribute", ""), frame.step,
                                  frame.image, frame.degrees))

        def on_preview(image) -> None:
            frames.put(FrameEvent(current_call.get("id", ""), current_call.get("attribute", ""), -1, image, {},
                                  preview=True))

        tools = {t.name: t for t in make_tools(self.editor, state, on_frame, on_preview)}
        model = self.llm.bind_tools(list(tools.values()))
        human = HumanMessage(text)
        messages = [SystemMessage(system_prompt(state)), *self._memory(session), human]
        new: list[BaseMessage] = [human]
        calls: list[dict] = []
        answer: str | None = None
        offered: dict | None = None  # a call the model's reply offers ("Did you mean ...?"): a "yes" runs it

        # 3. the tool-calling loop, with guard rails for real models: a limit on the model's time in the
        #    turn, a limit on tool calls, a few repairs of bad calls at most, a fallback model on failure
        model_s = 0.0  # the model's own time this turn; the tools' is not counted
        failed_calls = 0
        notice = ""
        for round_ in range(self.max_rounds):
            if scripted is not None and round_ > 0:
                break  # a control's call is answered by the tool's own words, not by the model
            if model_s > self.turn_timeout_s:
                stopped = f"The language model took longer than {self.turn_timeout_s:g} s for this turn, so I stopped."
                done = " ".join(m.text for m in new if isinstance(m, ToolMessage))  # what its calls did is still said
                answer = f"{done} ({stopped})" if done else stopped
                break
            started = time.monotonic()
            try:
                ai = AIMessage("", tool_calls=[scripted]) if scripted is not None else model.invoke(messages)
            except Exception as error:  # a real model's server can fail; the session must not
                logger.warning("chat model failed: %s: %s", type(error).__name__, error)
                if self.fallback is not None and not notice:
                    model = self.fallback.bind_tools(list(tools.values()))
                    notice = f"(The language model failed: {_short(error)}; the built-in one answered.) "
                    continue
                answer = f"The language model failed ({_short(error)}); nothing was changed by it."
                break
            finally:
                model_s += time.monotonic() - started
            messages.append(ai)
            new.append(ai)
            requested = [(c, True) for c in ai.tool_calls] + [(c, False) for c in ai.invalid_tool_calls]
            if not requested:
                answer = ai.text
                offered = ai.additional_kwargs.get("question")
                break
            for call, readable in requested:
                args = call["args"] if isinstance(call.get("args"), dict) else {"raw": str(call.get("args"))}
                current_call.clear()
                current_call.update(id=call["id"], attribute=args.get("attribute", ""))
                if readable and len(calls) < self.max_tool_calls:
                    result = yield from self._run_tool(tools, call, frames)
                elif readable:
                    result = _refusal(call, f"not run: at most {self.max_tool_calls} tool calls per turn")
                else:  # the model's arguments could not even be read as JSON
                    result = _refusal(call, f"the call could not be read ({call.get('error') or 'bad arguments'}); "
                                            "send the arguments as a JSON object")
                messages.append(result)
                new.append(result)
                artifact = result.artifact or {}
                ok = result.status != "error"
                failed_calls += not ok
                calls.append({"name": str(call.get("name")), "args": args, "ok": ok})
                yield ToolEvent(call["id"], str(call.get("name")), args, result.text, ok,
                                bool(artifact.get("changed")), artifact.get("image"))
            if failed_calls > self.max_repairs:
                answer = " ".join(m.text for m in new if isinstance(m, ToolMessage) and m.status != "error")
                answer = (answer + " " if answer else "") + "I couldn't turn that into a valid edit; please rephrase it."
                break
        if answer is None or not answer.strip():  # the model stopped without words: report the tools' own
            answer = " ".join(m.text for m in new if isinstance(m, ToolMessage)) or load_feedback().say("unknown")
            if not isinstance(new[-1], AIMessage) or new[-1].tool_calls:
                new.append(AIMessage(answer))

        answer = notice + answer
        if isinstance(offered, dict) and offered.get("name") in tools:
            state.question = offered

        # 4. remember the turn (text only: images stay out of the memory every later turn carries)
        session.messages.extend(m.model_copy(update={"artifact": None}) if isinstance(m, ToolMessage) else m
                                for m in new)
        reply = self._reply(state, answer, calls)
        state.turns.append(Turn(text, [{k: c[k] for k in ("name", "args", "ok")} for c in calls], answer,
                                dict(reply.degrees)))
        yield reply

    def _run_tool(self, tools: dict, call: dict, frames: queue.Queue):
        """Runs one call in a worker thread, yielding its frames as they come; returns the ``ToolMessage``."""
        tool = tools.get(call["name"])
        if tool is None:
            known = ", ".join(tools)
            return ToolMessage(f"there is no tool {call['name']!r}; the tools are {known}", tool_call_id=call["id"],
                               name=call["name"], status="error")

        def work() -> ToolMessage:
            try:
                return tool.invoke({**call, "type": "tool_call"})
            except Exception as error:  # a bug, not a bad request: log it, keep the session
                logger.exception("tool %s failed", call["name"])
                return ToolMessage(f"{call['name']} failed unexpectedly ({type(error).__name__}); the face "
                                   "was left as it was", tool_call_id=call["id"], name=call["name"], status="error")

        return (yield from _while_streaming(work, frames, name=f"tool-{call['name']}"))

    def _memory(self, session: Session) -> list[BaseMessage]:
        """The last ``memory_turns`` turns of this session, cut at a person's message."""
        starts = [i for i, m in enumerate(session.messages) if isinstance(m, HumanMessage)]
        if len(starts) <= self.memory_turns:
            return list(session.messages)
        return session.messages[starts[-self.memory_turns]:]

    def _reply(self, state: DialogState, text: str, calls: list[dict]) -> Reply:
        if not state.has_face:
            return Reply(text, None, {}, calls)
        try:
            image = self.editor.image(state)
        except BackendError as error:  # the face cannot be drawn now (out of memory, the workers gone): said
            said = str(error)
            return Reply(text if said in text else f"{text} {said}".strip(), None, dict(state.current.degrees), calls)
        return Reply(text, image, dict(state.current.degrees), calls)


def _while_streaming(work: Callable[[], T], frames: queue.Queue, name: str) -> Generator[FrameEvent, None, T]:
    """Runs ``work`` in a worker thread and yields the events it puts on ``frames`` as they come;
    returns what ``work`` returned, or raises here what it raised."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as error:  # handed to the caller's thread below
            box["error"] = error
        finally:
            frames.put(None)

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    try:
        while (event := frames.get()) is not None:
            yield event
    finally:
        worker.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _to_the_end(events: Iterator[T]) -> Iterator[T]:
    """``events``; if the reader stops early (the generator is closed), the rest still runs,
    unseen, so a turn is never left half-applied: its face, turn log and memory go together."""
    for event in events:
        try:
            yield event
        except GeneratorExit:
            try:
                for _ in events:
                    pass
            except Exception as error:  # e.g. a photo refused once inverted: nothing was changed
                logger.info("a turn ended after its reader left: %s: %s", type(error).__name__, error)
            raise


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def _refusal(call: dict, why: str) -> ToolMessage:
    return ToolMessage(why, tool_call_id=call["id"], name=str(call.get("name")), status="error")


def first_response(llm: BaseChatModel, text: str, state: DialogState | None = None) -> dict:
    """What a chat model does with ``text`` in a session (fresh by default), before any tool runs:
    ``{"calls": [{"name", "args"}], "reply": text}``. Used by ``chatedit parse`` and ``bench parse``."""
    state = state or DialogState()
    model = llm.bind_tools(make_tools(None, state))
    ai = model.invoke([SystemMessage(system_prompt(state)), HumanMessage(text)])
    return {"calls": [{"name": c["name"], "args": c["args"]} for c in ai.tool_calls], "reply": ai.text}


def build_agent(backend: str = "builtin", llm: "str | LLMSettings" = "rules", method: str = "field",
                **options) -> Agent:
    """The agent for a registered backend and a chat model by name (the CLI's ``--backend`` / ``--llm``).
    ``options`` are the backend's own, as its registry entry declares them (``chatedit backends``
    lists them): ``weights``, ``device``, ``face_models``, the diffusion backend's ``model``, ``clip``, ...
    An option of another backend, or a chat model that does not exist, is refused before any model loads."""
    from chatedit.llms import LLMSettings, make_chat_model
    from chatedit.tools import registry

    spec = registry.get(backend)
    given = spec.make_options(**{k: v for k, v in options.items() if v is not None})
    settings = llm if isinstance(llm, LLMSettings) else LLMSettings(llm)
    chat_model = make_chat_model(settings)
    fallback = make_chat_model(settings.fallback) if settings.fallback else None
    if method not in spec.capabilities().methods:
        raise ValueError(f"--backend {backend} edits by {', '.join(spec.capabilities().methods)}, not {method!r}")
    return Agent(Editor(spec.load(given), method=method), chat_model, fallback=fallback)


__all__ = ["Agent", "EditError", "Event", "FrameEvent", "Reply", "Session", "ToolEvent", "build_agent", "first_response",
           "system_prompt"]
