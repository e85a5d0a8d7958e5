"""The agent's tools as LangChain tools: narrow, typed, and bound to one session.

The names and arguments are a contract (the issue tracker's #4): ``edit_attribute(attribute,
target=None, change=None)``, ``undo(steps=1)``, ``redo(steps=1)``, ``reset()``,
``new_face(seed=None)``, ``describe()``, and ``set_scene(scene)`` on a backend that draws scenes
(``capabilities.scenes``). No tool takes a path. Arguments are validated by the
pydantic schemas before anything runs; a bad call comes back to the model as an error
``ToolMessage`` with the bad value in it, and the face is left as it was.

Each tool returns ``(text, artifact)`` (``response_format="content_and_artifact"``): the text is
what the model reads, the artifact carries the image beside it and never enters a prompt.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Literal

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from chatedit.attributes import MAX_DEGREE, attribute_names
from chatedit.editor import EditError, Editor, Outcome
from chatedit.state import DialogState
from chatedit.tools.backend import BackendError


class _EditChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _one_of_target_or_change(self):
        if (self.target is None) == (self.change is None):
            raise ValueError(f"give exactly one of target or change, got target={self.target}, change={self.change}")
        if self.change == 0:
            raise ValueError("change must not be 0: say how many degrees up (positive) or down (negative)")
        return self


@lru_cache(maxsize=1)
def edit_schema() -> type[BaseModel]:
    """``edit_attribute``'s arguments; the attribute names come from ``prompts/attributes.yaml``."""
    names = attribute_names()
    return create_model(
        "EditAttribute",
        __base__=_EditChecks,
        attribute=(Literal[names], Field(description=f"which attribute to edit: one of {', '.join(names)}")),
        target=(int | None, Field(None, ge=0, le=MAX_DEGREE,
                                  description=f"the degree to reach, 0 (none) to {MAX_DEGREE} (most)")),
        change=(int | None, Field(None, ge=-MAX_DEGREE, le=MAX_DEGREE,
                                  description="degrees to move up (positive) or down (negative) from now")),
    )


@lru_cache(maxsize=1)
def describe_schema() -> type[BaseModel]:
    """``describe``'s arguments: optionally the one attribute asked about."""
    names = attribute_names()
    return create_model(
        "Describe", __config__=ConfigDict(extra="forbid"),
        attribute=(Literal[names] | None, Field(None, description=f"only this attribute (one of {', '.join(names)}), "
                                                                  "when the person asked about one")),
    )


class Steps(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(1, ge=1, le=50, description="how many changes to step over")


class NewFace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(None, ge=0, lt=2**31, description="the same seed always gives the same face")


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


def validation_message(error: ValidationError) -> str:
    """One line per problem, naming the argument and the value that was refused."""
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')}{shown}")
    return "invalid arguments: " + "; ".join(problems)


def make_tools(editor: Editor | None, state: DialogState, on_frame: Callable | None = None,
               on_preview: Callable | None = None) -> list[StructuredTool]:
    """The six tools, acting on this session's ``state`` only (``editor=None``: schemas only, for planning)."""

    def run(action: Callable[[], Outcome]) -> tuple[str, dict]:
        if editor is None:
            raise ToolException("these tools were built without an editor: they can be bound but not run")
        try:
            outcome = action()
        except (EditError, BackendError) as error:  # a sentence for the person; the state is unchanged
            raise ToolException(str(error)) from error
        content = f"{outcome.text} {outcome.question}" if outcome.question else outcome.text
        return content, {"image": outcome.image, "changed": outcome.changed, "text": outcome.text,
                         "question": outcome.question, "reached": outcome.reached}

    def edit_attribute(attribute: str, target: int | None = None, change: int | None = None):
        return run(lambda: editor.edit(state, attribute, target=target, change=change, on_frame=on_frame,
                                       on_preview=on_preview))

    def undo(steps: int = 1):
        return run(lambda: editor.undo(state, steps))

    def redo(steps: int = 1):
        return run(lambda: editor.redo(state, steps))

    def reset():
        return run(lambda: editor.reset(state))

    def new_face(seed: int | None = None):
        return run(lambda: editor.new_face(state, seed))

    def describe(attribute: str | None = None):
        return run(lambda: editor.describe(state, attribute))

    names = ", ".join(attribute_names())
    specs = [
        (edit_attribute, edit_schema(),
         f"Edit one attribute of the face ({names}) to an exact degree (target, 0 = none … {MAX_DEGREE} = most) "
         "or by a number of degrees (change, e.g. +1 for 'a bit more', -2 for 'much less'). Give exactly one of "
         "target or change. The result says which degree was reached."),
        (undo, Steps, "Undo the last change(s) to the face."),
        (redo, Steps, "Redo change(s) that were undone."),
        (reset, NoArguments, "Go back to the face as it was at the start."),
        (new_face, NewFace, "Start again with a new generated face."),
        (describe, describe_schema(), "Describe the face as it is now, attribute by attribute, or the one "
                                      "attribute asked about ('does she have glasses?')."),
    ]
    tools = [
        StructuredTool.from_function(
            func=func, name=func.__name__, description=description, args_schema=schema,
            response_format="content_and_artifact", handle_tool_error=True,
            handle_validation_error=validation_message,
        )
        for func, schema, description in specs
    ]
    if editor is not None and editor.backend.capabilities.scenes:  # "put her on a beach": set_scene(scene)
        from chatedit.scenes import scene_tool

        tools.append(scene_tool(editor, state))
    return tools
