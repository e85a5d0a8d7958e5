"""Scenes: the place, clothes, light or style a face is drawn in, on a backend that draws scenes.

A backend that declares ``capabilities.scenes`` implements ``with_scene(latent, scene)``; the agent
then offers ``set_scene(scene)``, whose argument is validated before anything runs (one line of
printable text, 1 to ``MAX_SCENE_CHARS`` characters), and a scene change is a history entry like
an edit, so undo brings the old scene back.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_SCENE_CHARS = 200  # about what CLIP's 77 tokens hold


def check_scene(text: str) -> str:
    """The scene as given, stripped; raises ``ValueError`` with the value when it is not one line of
    1 to ``MAX_SCENE_CHARS`` printable characters."""
    if not isinstance(text, str):
        raise ValueError(f"a scene is text, got {type(text).__name__}")
    scene = text.strip()
    if not 1 <= len(scene) <= MAX_SCENE_CHARS:
        raise ValueError(f"a scene has 1 to {MAX_SCENE_CHARS} characters, got {len(scene)}: {scene[:40]!r}")
    if not scene.isprintable():
        bad = next(c for c in scene if not c.isprintable())
        raise ValueError(f"a scene is one line of printable text; {scene[:40]!r} holds {bad!r}")
    return scene


class SceneRequest(BaseModel):
    """``set_scene``'s argument."""

    model_config = ConfigDict(extra="forbid")
    scene: str = Field(min_length=1, max_length=MAX_SCENE_CHARS,
                       description="where and how to show the person, in a few words for an image model, e.g. "
                                   "'on a sunny beach, wearing a straw hat' or 'a studio portrait, grey background'")

    @field_validator("scene")
    @classmethod
    def _one_printable_line(cls, value: str) -> str:
        return check_scene(value)


SCENE_TOOL_DESCRIPTION = ("Change the scene the person is shown in (the place, clothes, light or style: 'put her on "
                          "a beach', 'in a suit, in an office'); the face and its attributes stay as they are.")


def change_scene(editor, state, scene: str):
    """Shows the face of ``state`` in ``scene``: a new history entry (so undo brings the old scene back)
    with the same W+ code; its degrees are read again on the new picture. Returns the editor's ``Outcome``."""
    from chatedit.editor import EditError, Outcome
    from chatedit.state import Entry

    if not state.has_face:
        raise EditError("there is no face yet to put in a scene: ask for a new face or upload a photo first")
    try:
        scene = check_scene(scene)
    except ValueError as error:
        raise EditError(str(error)) from error
    backend = editor.backend
    try:
        latent = backend.with_scene(state.current.latent.to(backend.device), scene)
    except NotImplementedError as error:  # e.g. the page of a server whose workers do not serve scenes yet
        raise EditError(f"the scene cannot be changed here: {error}") from error
    image, degrees = editor.read(latent)
    state.push(Entry(latent.detach().float().cpu(), degrees, f"scene: {scene}", state.current.face))
    return Outcome(f"Here is the same face, {scene}.", True, image)


def scene_tool(editor, state, name: str = "set_scene"):
    """``set_scene(scene)`` as a LangChain tool over one session's ``state``, in the shape of
    ``chatedit.toolkit.make_tools``'s tools (content and artifact; a bad value comes back to the model
    as an error message naming it)."""
    from langchain_core.tools import StructuredTool, ToolException

    from chatedit.editor import EditError
    from chatedit.toolkit import validation_message
    from chatedit.tools.backend import BackendError

    def set_scene(scene: str):
        try:
            outcome = change_scene(editor, state, scene)
        except (EditError, BackendError) as error:
            raise ToolException(str(error)) from error
        return outcome.text, {"image": outcome.image, "changed": outcome.changed, "text": outcome.text,
                              "question": None, "reached": None}

    return StructuredTool.from_function(func=set_scene, name=name, description=SCENE_TOOL_DESCRIPTION,
                                        args_schema=SceneRequest, response_format="content_and_artifact",
                                        handle_tool_error=True, handle_validation_error=validation_message)
