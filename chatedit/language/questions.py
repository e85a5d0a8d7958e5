"""Questions about the face ("how's the beard looking?", "is he old or young?"): a description, not an edit.

A clause is such a question when it names one attribute (or the face) and either opens with a
question word and holds no word of a wish or a change ("what would she look like at 80" is a
wish: its frame is gone before this runs), or opens with a verb that asks for a report
("describe", "report", "tell me"), or asks for one by its noun ("give me a rundown of the face").
A name alone, asked ("his age, roughly?", "beard?"), is one too, and so is a choice between two
degrees or a yes and a no ("the beard is long or short?", "glasses on or off?"); a choice asked as
a wish ("should the beard be long or short?") only the person can settle.
``lexicon.yaml``'s ``face_questions`` holds the words.
"""

from __future__ import annotations

from .reading import ADD, CHANGE, RELATIVE, REMOVE, WEAK, Reading, read_clause
from .text import PUNCTUATION, Clause
from .vocabulary import Vocabulary

CHOICE_REACH = 3   # words between "or" and a choice it joins


def _starts(words: list[str], phrases: frozenset[tuple[str, ...]]) -> int:
    return next((n for n in range(min(len(words), 4), 0, -1) if tuple(words[:n]) in phrases), 0)


def _is(vocab: Vocabulary, word: str, *kinds: str) -> bool:
    return any(r.kind in kinds for r in vocab.lexicon.get((word,), ()))


def _attributes(vocab: Vocabulary, word: str, kinds=("name", "degree", "polar", "look", "cmp")) -> set[str]:
    return {r.attribute for r in vocab.lexicon.get((word,), ()) if r.attribute and r.kind in kinds}


def _at_age(words: list[str], vocab: Vocabulary) -> bool:
    """ "at seventy", "when he was fourteen": an age said as a time."""
    at = vocab.phrasing.question_at_age
    return any(w.startswith("age:") and j and (words[j - 1] in at["before"] or (
               words[j - 1] in at["verbs"] and at["when"] & set(words[max(0, j - 4):j - 1])))
               for j, w in enumerate(words))


def compared_with_age(words: list[str], vocab: Vocabulary) -> bool:
    """ "(do you think) he is older than sixty", "he has more than sixty years": the face now set against an
    age, said by a subject and a verb of being."""
    c, subjects = vocab.phrasing.question_compared, vocab.phrasing.observe[0]
    words = _unsaid(words, vocab.phrasing.question_opinion)
    return len(words) > 3 and words[0] in subjects and words[1] in c["verbs"] and any(
        w in c["than"] and (nxt.startswith("age:") or nxt.isdigit() or nxt in vocab.numbers)
        for w, nxt in zip(words, words[1:]))


def face_question(clause: Clause, reading: Reading, vocab: Vocabulary) -> tuple[bool, str | None]:
    """(asked, attribute): whether the clause asks how the face is, and about which attribute (None: all)."""
    q = vocab.phrasing
    words = [w for w in clause.words if w not in vocab.skipped]
    while words and words[0] in q.question_lead:
        words = words[1:]
    about = reading.names[0] if len(reading.names) == 1 else None
    face = any(tuple(words[i:i + n]) in q.question_face for i in range(len(words)) for n in (1, 2))
    if clause.asked and not clause.framed and compared_with_age(words, vocab):
        return True, "age"   # "do you think he is older than sixty?"
    changing = any(c.level in (REMOVE, CHANGE, RELATIVE, WEAK) for c in reading.cues)
    if not words or reading.things or reading.blocked or changing:
        return False, None   # "what does he look like without his beard": a change asked as a question
    report = _report(words, vocab)
    if clause.asked and about and len(words) > 1 and words[1] in q.question_measures and _is(vocab, words[0], "name") \
            and not any(w.isdigit() for w in words):
        return True, about   # "beard length?", "age estimate for him?": its measure asked
    if clause.asked and about and len(words) > 2 and _is(vocab, words[-1], "enough") and all(
            _is(vocab, w, "name", "degree", "polar", "look") for w in words[:-1]):
        return True, about   # "glasses thick enough?": whether it is, asked without a verb
    if report or _starts(words, q.question_verbs):   # "describe his expression", "give me a rundown of the face"
        return bool(about or face or report or len(words) <= 2), about
    raw = [w for w in clause.words if w not in q.question_lead]
    if len(raw) > 1 and raw[0] in q.question_causative and raw[1] in q.question_objects:
        return False, None   # "have her burst out laughing"
    adding = [c for c in reading.cues if c.level == ADD]
    markers, looking = q.question_hypothetical
    if adding and ((words[0],) not in q.question_open
                   or (any(c.word in markers for c in adding) and looking & set(words))):
        return False, None   # "what does she look like with a beard?": a look asked for
    if _at_age(words, vocab):
        return False, None   # "what does she look like at seventy?": a look asked for
    wishes = q.question_wishes - ({"enough"} if words[0] in q.enough_asked else set())   # "is it long enough?"
    if (words[0],) in q.question_open and not any(w in wishes for w in _unsaid(words, q.question_opinion)):
        return bool(about or face), about
    return False, None


def topic_question(clause: Clause, reading: Reading, rest: list[Clause], vocab: Vocabulary, alone: bool) -> bool:
    """ "her age, roughly?", "his glasses?", "beard?": a question of nothing but a name, said with a
    possessive or as the whole message, the rest of its sentence (``rest``) asking nothing more, asks
    about it; not when asked for politely ("glasses please?")."""
    said = alone or bool(set(clause.words) & vocab.phrasing.question_possessive)
    polite = set(clause.words) & vocab.phrasing.question_polite   # "glasses please?": asked for
    return reading.bare and clause.asked and said and not polite and not any(
        r.cues or r.names for r in (read_clause(c, vocab) for c in rest))


def _report(words: list[str], vocab: Vocabulary) -> bool:
    """ "give me a rundown of the face", "provide the beard's current value", "what level is the smile at":
    a report asked for by its noun. Not when it is given to the face ("give her ...") or holds a number
    ("give her a level 1 smile": a degree)."""
    q = vocab.phrasing
    if len(words) < 2 or any(w.isdigit() for w in words):
        return False
    if (words[0],) in q.question_open:
        return words[1] in q.report_nouns
    return words[0] in q.report_verbs and words[1] not in q.report_not_to and bool(set(words) & q.report_nouns)


def _unsaid(words: list[str], phrases: frozenset[tuple[str, ...]]) -> list[str]:
    """``words`` without these phrases: "would you say she looks happy or sad" -> "she looks happy or sad"."""
    out, i = [], 0
    while i < len(words):
        size = next((n for n in (4, 3, 2, 1) if tuple(words[i:i + n]) in phrases), 0)
        out += words[i:i + 1] if not size else []
        i += size or 1
    return out


def _asks_change(vocab: Vocabulary, word: str) -> bool:
    """A word of a wish or an order ("would", "make"), not one of the choices ("older or younger", "more or
    less")."""
    choice = _attributes(vocab, word) or any(r.kind in ("more", "less", "too", "enough")
                                             for r in vocab.lexicon.get((word,), ()))
    return word in vocab.phrasing.question_wishes and not choice


def _choice(words: list[str], vocab: Vocabulary) -> tuple[str | None, list[str]]:
    """(attribute, the two choices) of two choices joined by "or", a few words apart at most ("does she
    look young to you, or older?"), that are about one attribute: two of its degrees, or a yes and a no
    about the one the sentence names ("glasses on or off?")."""
    q = vocab.phrasing
    either = q.question_either["yes"] | q.question_either["no"]
    named = set().union(*(_attributes(vocab, w, ("name",)) for w in words))
    for k, w in enumerate(words[1:-1], start=1):
        if w not in q.question_alternative:
            continue
        choices = [next((x for x in side[:CHOICE_REACH] if x in either or _attributes(vocab, x)), "")
                   for side in (words[k - 1::-1], words[k + 1:])]
        sides = [named if x in either else _attributes(vocab, x) for x in choices]
        if not named and len(set(choices) & either) == 1:   # "happy or no?": a yes or a no about the other choice
            other = next(side for x, side in zip(choices, sides) if x not in either)
            sides = [other, other]
        common = sides[0] & sides[1] if not set(choices) <= either else set(named)
        if len(named) == 1 and named & (sides[0] | sides[1]):
            common = set(named)   # "the beard is long or short?", "is his beard thick or thin?": the one named
        if len(common) == 1:
            return common.pop(), choices
    return None, []


def _sign(vocab: Vocabulary, word: str, attribute: str) -> int:
    """Which way a choice goes: +1 for "on", "longer", "happy", -1 for "off", "short", "sad", 0 when neither."""
    either = vocab.phrasing.question_either
    if word in either["yes"] or word in either["no"]:
        return 1 if word in either["yes"] else -1
    values = [r.value for r in vocab.lexicon.get((word,), ()) if r.attribute == attribute and r.kind in ("polar", "cmp")]
    return (1 if values[0] > 0 else -1) if values else 0


def alternatives(tokens: list[str], vocab: Vocabulary) -> tuple[list[str], list[str], list[str]]:
    """ "is he happy or serious right now?", "the beard is long or short?", "glasses on or off?": the
    attributes asked about by two choices joined by "or" in a question that asks for no change; those
    asked to change one way or the other ("should the beard be long or short?"), which only the person
    can settle; and the tokens with both kinds of question taken out."""
    asked, undecided, out, sentence = [], [], [], []
    for tok in tokens + ["."]:
        sentence.append(tok)
        if tok not in PUNCTUATION or tok in (",", ":"):   # "beard: long or short?" is one question
            continue
        words = [w for w in sentence if w not in vocab.skipped and w != ","]
        found, choices = _choice(words, vocab) if tok == "?" else (None, [])
        if found and not any(_asks_change(vocab, w) for w in _unsaid(words, vocab.phrasing.question_opinion)):
            asked.append(found)
        elif found and _sign(vocab, choices[0], found) * _sign(vocab, choices[1], found) < 0:
            undecided.append(found)
        else:
            out.extend(sentence)
        sentence = []
    return asked, undecided, out[:-1]
