"""Chat models by name, for ``--llm``: the built-in rules model now; real models connect here."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

AVAILABLE = ("rules",)


def make_chat_model(name: str) -> BaseChatModel:
    if name == "rules":
        from chatedit.rules_model import RulesChatModel

        return RulesChatModel()
    raise ValueError(f"unknown chat model {name!r}; available: {', '.join(AVAILABLE)}")
