"""The built-in language understanding: one user message plus dialog context -> intents.

``parse`` (in ``parse.py``) is the entry point; ``vocabulary.py`` reads every word it knows from
``prompts/language.yaml`` and ``prompts/lexicon*.yaml``; ``text.py`` normalises and splits a
message; ``phrasing.py`` rewrites phrasal verbs, word formation and superlatives; ``reading.py``
finds the cues in one clause; ``descriptions.py`` matches a described look against the degree
descriptions; ``questions.py`` finds questions about the face; ``build_lexicon.py`` derives the
WordNet part of the lexicon (docs/language.md).
"""

from .parse import DialogContext, Intent, intents_to_calls, parse
from .text import normalise
from .vocabulary import load_vocabulary

__all__ = ["DialogContext", "Intent", "intents_to_calls", "load_vocabulary", "normalise", "parse"]
