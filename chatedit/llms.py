"""Chat models by name, for ``--llm``: the built-in rules model, or a real LLM through LangChain.

- ``rules``: the built-in deterministic model (no weights, no network).
- ``openai:MODEL``: ``langchain_openai.ChatOpenAI``, for OpenAI and every server that speaks its
  chat-completions protocol (vLLM, llama.cpp's server, LM Studio, Ollama's ``/v1``); the address
  comes from ``--llm-base-url`` (or ``OPENAI_BASE_URL``), the key from ``OPENAI_API_KEY`` (local
  servers that want none get a placeholder).
- ``ollama:MODEL``: ``langchain_ollama.ChatOllama`` against Ollama's own API (``--llm-base-url``,
  else ``OLLAMA_HOST``, else http://127.0.0.1:11434).

Clients never retry on their own (the agent decides what a failure means for the turn) and
every request has a time limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

PROVIDERS = ("rules", "openai:MODEL", "ollama:MODEL")


@dataclass(frozen=True)
class LLMSettings:
    name: str = "rules"
    base_url: str | None = None
    timeout_s: float = 60.0  # one request to the provider
    fallback: str | None = None  # a chat model that answers when this one fails (e.g. "rules")

    @property
    def is_rules(self) -> bool:
        return self.name == "rules"


def make_chat_model(llm: str | LLMSettings) -> BaseChatModel:
    settings = llm if isinstance(llm, LLMSettings) else LLMSettings(llm)
    name = settings.name
    if name == "rules":
        from chatedit.rules_model import RulesChatModel

        return RulesChatModel()
    provider, sep, model = name.partition(":")
    if not sep or not model.strip():
        raise ValueError(f"unknown chat model {name!r}; use one of: {', '.join(PROVIDERS)}")
    if provider == "openai":
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as error:  # pragma: no cover - a dependency of the package
            raise ValueError("--llm openai:… needs langchain-openai (pip install langchain-openai)") from error
        return ChatOpenAI(
            model=model, base_url=settings.base_url or os.environ.get("OPENAI_BASE_URL"),
            api_key=os.environ.get("OPENAI_API_KEY") or "not-needed", timeout=settings.timeout_s,
            max_retries=0, temperature=0,
        )
    if provider == "ollama":
        try:
            from langchain_ollama import ChatOllama
        except ImportError as error:  # pragma: no cover - a dependency of the package
            raise ValueError("--llm ollama:… needs langchain-ollama (pip install langchain-ollama)") from error
        base_url = settings.base_url or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        return ChatOllama(model=model, base_url=base_url, temperature=0, client_kwargs={"timeout": settings.timeout_s})
    raise ValueError(f"unknown chat model provider {provider!r}; use one of: {', '.join(PROVIDERS)}")
