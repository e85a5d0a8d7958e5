"""Small stand-ins shared by the dialog tests: a transparent five-attribute world and a scripted chat model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from chatedit.attributes import attribute_names
from chatedit.tools.backend import Backend, Capabilities


@dataclass
class Reading:
    degrees: torch.Tensor
    expected: torch.Tensor
    probs: torch.Tensor | None = None  # a reader with no distribution over degrees


class OpenWorld(Backend):
    """The latent *is* the five attribute values; the predictor reads them back exactly.

    ``walls`` stops an attribute from rising past a value (an edit this face cannot take). Its
    ``encode`` shows nothing while it works (``streams_inversion`` off).
    """

    name = "open-world"
    resolution = 8
    device = torch.device("cpu")
    capabilities = Capabilities(streams_inversion=False)

    def __init__(self, walls: dict[str, float] | None = None):
        self.attributes = attribute_names()
        self.walls = walls or {}

    def intake(self, picture):
        raise NotImplementedError("the open world takes no photos")

    def sample(self, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 3, (1, len(self.attributes)), generator=g).float()

    def encode(self, image, refine_steps: int = 0, on_progress=None):
        if on_progress is not None:
            raise AssertionError("the editor handed a progress callback to a backend that declares none")
        return image[:, 0, 0, : len(self.attributes)].clone()

    def generate(self, w, on_preview=None):
        image = torch.zeros(w.shape[0], 3, 8, 8)
        image[:, 0, 0, : w.shape[1]] = w
        return image

    def predict(self, image):
        values = image[:, 0, 0, : len(self.attributes)].clamp(0, 5)
        return Reading(values.round().long(), values)

    def identity(self, image):
        return torch.ones(image.shape[0], 1)

    def step(self, method, attribute, w, direction=1):
        out = torch.zeros_like(w)
        wall = self.walls.get(self.attributes[attribute], 99.0)
        out[:, attribute] = min(1.0, max(wall - float(w[0, attribute]), 0.0))  # never past the wall
        return out * direction

    def latent_distance(self, w):
        return torch.tensor(1.0)


class ScriptedChatModel(BaseChatModel):
    """Answers with the given messages in order and records every conversation it was shown."""

    script: list[Any]
    seen: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.seen.append(list(messages))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return ChatResult(generations=[ChatGeneration(message=step)])


def call(name: str, call_id: str = "c1", **args) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}])
