"""The built-in language understanding: one user message plus dialog context -> intents.

``parse`` (in ``parse.py``) is the entry point; ``vocabulary.py`` reads every word it knows from
``prompts/language.yaml``; ``text.py`` normalises and splits a message; ``reading.py`` finds the
cues in one clause.
"""

from .parse import DialogContext, Intent, intents_to_calls, parse
from .text import normalise
from .vocabulary import load_vocabulary

__all__ = ["DialogContext", "Intent", "intents_to_calls", "load_vocabulary", "normalise", "parse"]
