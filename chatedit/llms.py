"""Chat models by name, for ``--llm``: the built-in rules model, or a real LLM through LangChain.

- ``rules``: the built-in deterministic model (no weights, no network).
- ``openai:MODEL``: ``langchain_openai.ChatOpenAI``, for OpenAI and every server that speaks its
  chat-completions protocol (vLLM, llama.cpp's server, LM Studio, Ollama's ``/v1``); the address
  comes from ``--llm-base-url`` (or ``OPENAI_BASE_URL``), the key from ``OPENAI_API_KEY`` (local
  servers that want none get a placeholder).
- ``ollama:MODEL``: ``langchain_ollama.ChatOllama`` against Ollama's own API (``--llm-base-url``,
  else ``OLLAMA_HOST``, else http://127.0.0.1:11434).

LangChain's ``init_chat_model`` reads the ``provider:model`` string and builds the client; this
module only adds each provider's address, key and limits. Clients never retry on their own (the
agent decides what a failure means for the turn) and every request has a time limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

PROVIDERS = ("rules", "openai:MODEL", "ollama:MODEL")


@dataclass(frozen=True)
class LLMSettings:
    name: str = "rules"
    base_url: str | None = None
    timeout_s: float = 60.0  # one request to the provider
    fallback: str | None = None  # a chat model that answers when this one fails (e.g. "rules")


def _provider_options(provider: str, settings: LLMSettings) -> dict[str, Any]:
    """The keyword arguments ``init_chat_model`` passes to the provider's client."""
    if provider == "openai":
        return {"base_url": settings.base_url or os.environ.get("OPENAI_BASE_URL"),
                "api_key": os.environ.get("OPENAI_API_KEY") or "not-needed",
                "timeout": settings.timeout_s, "max_retries": 0, "temperature": 0}
    base_url = settings.base_url or os.environ.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
    return {"base_url": base_url, "temperature": 0, "client_kwargs": {"timeout": settings.timeout_s}}


def make_chat_model(llm: str | LLMSettings) -> BaseChatModel:
    settings = llm if isinstance(llm, LLMSettings) else LLMSettings(llm)
    name = settings.name
    if name == "rules":
        from chatedit.rules_model import RulesChatModel

        return RulesChatModel()
    provider, sep, model = name.partition(":")
    if not sep or not model.strip():
        raise ValueError(f"unknown chat model {name!r}; use one of: {', '.join(PROVIDERS)}")
    if provider not in ("openai", "ollama"):
        raise ValueError(f"unknown chat model provider {provider!r}; use one of: {', '.join(PROVIDERS)}")
    from langchain.chat_models import init_chat_model  # here: the rules model needs none of it

    try:
        return init_chat_model(name, **_provider_options(provider, settings))
    except ImportError as error:  # pragma: no cover - both clients are dependencies of the package
        raise ValueError(f"--llm {provider}:… needs langchain-{provider} (pip install langchain-{provider})") from error
