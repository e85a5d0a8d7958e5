"""The built-in language model (``--llm rules``): a deterministic LangChain chat model.

It speaks the same protocol as any tool-calling chat model, so the agent loop cannot tell it
from a real one: given a conversation ending in the person's message it answers with an
``AIMessage`` carrying ``tool_calls`` (or with a reply when nothing is to be called); given the
tool results it answers with the reply. It reads the dialog state (focus, last change, pending
question, degrees) from the ``<state>`` block of the system message, as a real model would read
it from the prompt. Understanding lives in ``chatedit.language``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from chatedit.feedback import load_feedback
from chatedit.language import (
    DialogContext,
    Intent,
    intents_to_calls,
    load_vocabulary,
    parse,
)
from chatedit.language.scenes import split_scene

STATE_BLOCK = re.compile(r"<state>\s*(\{.*?\})\s*</state>", re.S)


def read_state(messages: Sequence[BaseMessage]) -> DialogContext:
    """The dialog context from the last system message's ``<state>`` JSON; empty when there is none."""
    for message in reversed(messages):
        if isinstance(message, SystemMessage):
            match = STATE_BLOCK.search(message.text)
            if match:
                data = json.loads(match.group(1))
                return DialogContext(focus=data.get("focus"), last_change=data.get("last_change"),
                                     suggestion=data.get("question"), degrees=data.get("degrees"),
                                     earlier=data.get("earlier"))
    return DialogContext()


def _describe_call(call: dict) -> str:
    args = call["args"]
    if call["name"] != "edit_attribute":
        return call["name"].replace("_", " ")
    if "target" in args:
        return f"{args['attribute']} to degree {args['target']}"
    return f"{args['attribute']} {args['change']:+d}"


def _said(results: list[ToolMessage]) -> list[str]:
    """What the tools said, in order; edits in a row that each landed where asked become one sentence."""
    said, run = [], []
    for m in [*results, None]:
        artifact = m.artifact if m is not None and isinstance(m.artifact, dict) else {}
        if artifact.get("reached"):
            run.append(artifact["reached"])
            continue
        if run:
            said.append(load_feedback().reached(run))
            run = []
        if m is not None:
            said.append(artifact.get("text", m.text))
    return said


class RulesChatModel(BaseChatModel):
    """Understands the five attributes and dialog follow-ups with rules; no weights, no network."""

    @property
    def _llm_type(self) -> str:
        return "chatedit-rules"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any):
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        return self.bind(tool_names=names, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager=None,
                  tool_names: Sequence[str] | None = None, **kwargs: Any) -> ChatResult:
        if not messages:
            raise ValueError("the rules model needs at least one message")
        # the person's last message, and the tool results that came after it (if any)
        turn_start = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage)) \
            if any(isinstance(m, HumanMessage) for m in messages) else None
        if turn_start is None:
            return self._reply(load_feedback().say("unknown"))
        human = messages[turn_start]
        context = read_state(messages[:turn_start])
        scene, text = (None, human.text) if tool_names is None or "set_scene" not in tool_names \
            else split_scene(human.text)  # "put her on a beach", where the backend draws scenes
        intents = parse(text, context) if scene is None or text.strip() else []
        results = [m for m in messages[turn_start + 1:] if isinstance(m, ToolMessage)]
        calls = ([{"name": "set_scene", "args": {"scene": scene}}] if scene else []) + intents_to_calls(intents)
        if tool_names is not None:
            calls = [c for c in calls if c["name"] in tool_names]
        notes = self._notes(intents, bool(calls))
        if results or not calls:
            # 2. after the tools ran (or when there is nothing to run): the reply, with the question last;
            #    a part not understood asks about the closest edit instead, and a "yes" runs it
            said = _said(results)
            question = results[-1].artifact.get("question") if results and isinstance(results[-1].artifact, dict) \
                else None
            unclear = next((i for i in intents if i.kind == "unclear"), None)
            if unclear is not None:
                offer, question = _offer(unclear.attribute, context.degrees, bool(calls))
                return self._reply(" ".join([*said, *notes, question]).strip(), offer)
            return self._reply(" ".join([*said, *notes, *([question] if question else [])]).strip())
        # 1. the calls, with a short plan as content
        start = sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))
        tool_calls = [{"name": c["name"], "args": c["args"], "id": f"call_{start + i}", "type": "tool_call"}
                      for i, c in enumerate(calls)]
        plan = "; ".join(_describe_call(c) for c in calls)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=plan, tool_calls=tool_calls))])

    @staticmethod
    def _notes(intents: list[Intent], calling: bool) -> list[str]:
        """What to say about the parts of the message that call no tool."""
        feedback = load_feedback()
        notes = []
        for intent in intents:
            if intent.kind == "out_of_scope":
                notes.append(feedback.say("out_of_scope", thing=f"the {intent.thing}"))
                hint = feedback.data.get("out_of_scope_hint", {}).get(intent.thing)
                if hint:
                    notes.append(hint)
            elif intent.kind in ("decline", "content", "help", "files", "greeting") and not calling:
                notes.append(feedback.say(intent.kind))
        if not calling and not notes and not any(i.kind == "unclear" for i in intents):
            notes.append(feedback.say("unknown"))
        return notes

    @staticmethod
    def _reply(text: str, question: dict | None = None) -> ChatResult:
        """A reply in words; ``question``: the call it offers, which the agent keeps as the open question."""
        extra = {"question": question} if question else {}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, additional_kwargs=extra))])


def _offer(attribute: str, degrees: dict[str, int] | None, partly: bool) -> tuple[dict, str]:
    """The closest edit to offer for ``attribute`` and the sentence that offers it: "Did you mean: add a
    gentle smile?" when the face has none of it yet, else one degree more ("make the smile bigger")."""
    feedback = load_feedback()
    words = feedback.attribute(attribute)
    up = words["offer"]["up"]
    if not (degrees or {}).get(attribute) and up is not None:
        call, offer = {"name": "edit_attribute", "args": {"attribute": attribute, **up["args"]}}, up["say"]
    else:
        call, offer = {"name": "edit_attribute", "args": {"attribute": attribute, "change": 1}}, words["more"]["up"]
    sentence = load_vocabulary().phrasing.clarify["the_rest" if partly else "did_you_mean"]
    return call, sentence.format(noun=words["noun"], offer=offer)
