"""Questions about the face ("how's the beard looking?", "is he old or young?"): a description, not an edit.

A clause is such a question when it names one attribute (or the face) and either opens with a
question word and holds no word of a wish or a change ("what would she look like at 80" is a
wish: its frame is gone before this runs), or opens with a verb that asks for a report
("describe", "report", "tell me"). ``lexicon.yaml``'s ``face_questions`` holds the words.
"""

from __future__ import annotations

from .reading import ADD, CHANGE, RELATIVE, REMOVE, WEAK, Reading
from .text import PUNCTUATION, Clause
from .vocabulary import Vocabulary


def _starts(words: list[str], phrases: frozenset[tuple[str, ...]]) -> int:
    return next((n for n in range(min(len(words), 4), 0, -1) if tuple(words[:n]) in phrases), 0)


def _attributes(vocab: Vocabulary, word: str) -> set[str]:
    return {r.attribute for r in vocab.lexicon.get((word,), ())
            if r.attribute and r.kind in ("name", "degree", "polar", "look")}


def face_question(clause: Clause, reading: Reading, vocab: Vocabulary) -> tuple[bool, str | None]:
    """(asked, attribute): whether the clause asks how the face is, and about which attribute (None: all)."""
    q = vocab.phrasing
    words = [w for w in clause.words if w not in vocab.skipped]
    while words and words[0] in q.question_lead:
        words = words[1:]
    about = reading.names[0] if len(reading.names) == 1 else None
    face = any(tuple(words[i:i + n]) in q.question_face for i in range(len(words)) for n in (1, 2))
    changing = any(c.level in (REMOVE, CHANGE, RELATIVE, WEAK) for c in reading.cues)
    if not words or reading.things or reading.blocked or changing:
        return False, None   # "what does he look like without his beard": a change asked as a question
    raw = [w for w in clause.words if w not in q.question_lead]
    if len(raw) > 1 and raw[0] in q.question_causative and raw[1] in q.question_objects:
        return False, None   # "have her burst out laughing"
    adding = [c for c in reading.cues if c.level == ADD]
    markers, looking = q.question_hypothetical
    if adding and ((words[0],) not in q.question_open
                   or (any(c.word in markers for c in adding) and looking & set(words))):
        return False, None   # "what does she look like with a beard?": a look asked for
    if _starts(words, q.question_verbs):   # "describe his expression", "report the subject's apparent age"
        return bool(about or face or len(words) <= 2), about
    if (words[0],) in q.question_open and not any(w in q.question_wishes for w in words):
        return bool(about or face), about
    return False, None


def alternatives(tokens: list[str], vocab: Vocabulary) -> tuple[list[str], list[str]]:
    """ "is he happy or serious right now?": the attributes asked about by two of their degrees joined
    by "or" in a question, and the tokens with those questions taken out."""
    asked, out, sentence = [], [], []
    for tok in tokens + ["."]:
        sentence.append(tok)
        if tok not in PUNCTUATION or tok == ",":
            continue
        found = None
        if tok == "?":
            words = [w for w in sentence if w not in vocab.skipped]
            for k, w in enumerate(words[1:-1], start=1):
                if w in vocab.phrasing.question_alternative:
                    common = _attributes(vocab, words[k - 1]) & _attributes(vocab, words[k + 1])
                    if len(common) == 1:
                        found = common.pop()
        if found:
            asked.append(found)
        else:
            out.extend(sentence)
        sentence = []
    return asked, out[:-1]
