"""Rewrites that give phrasing a structure the vocabulary can read (``prompts/lexicon.yaml``).

Run on normalised tokens, before clauses are split:

0. hair said near the forehead is the fringe: "hair falling on her forehead" -> "fringe falling ...";
   someone else says nothing of the face: "my grandma wears thick glasses" -> "my person wears ...";
1. word formation: an unknown word made from a known one ("cheerier" -> "more cheery", "thickest"
   -> "most thick", "merriness" -> "smile", "trimmed" -> "trim"; "no rims" -> "rimless"; "de-beard",
   "glasses-less" -> "without beard", "without glasses"); then intensity words that only are one
   before a comparative ("way perkier" -> "much more perky"); years with no number of them ("take
   away some years" -> "younger some"); a negation before "this old" ("i don't want him to look
   this old" -> "... less old"); "lower" after a verb of hanging ("bangs that come down lower") ->
   "longer";
2. superlatives said with "as": "as old as it gets", "as young as he can possibly be" -> "most old";
3. phrasal verbs, the particle next to the verb or after its object: "tone the smile down" ->
   "decrease the smile", "crack up" -> "laugh"; not where the pair ends a phrase the lexicon knows
   ("corners turned up");
4. the faintest of a thing: "barely a whisper of a smile" -> "tiny smile"; none of it at all: "not
   even a hint of a smile", "not a single strand of fringe" -> "without smile", "without fringe".
"""

from __future__ import annotations

import re

from .vocabulary import Vocabulary

ARTICLES = frozenset({"a", "an", "the"})
STOPS = frozenset({",", ".", ";", "!", "?", ":"})
SENTENCE_ENDS = frozenset({".", ";", "!", "?"})
HAIR_REACH = 7   # words between hair and the forehead: "hair falling down over her forehead"
YEARS_REACH = 5   # words between a verb and the years it takes away: "take away from him some years"
PARTICLE_REACH = 5   # words between a verb and its particle: "turn [the big grin on her face] down"


def _roles(vocab: Vocabulary, word: str):
    return vocab.lexicon.get((word,), ())


def _known(vocab: Vocabulary, word: str) -> bool:
    return bool(_roles(vocab, word)) or word in vocab.phrasing.phrasal


def _stems(word: str, suffix: str) -> list[str]:
    """Candidate stems of ``word`` without ``suffix``: "bigg|est" -> big, "wid|est" -> wide, "merri|ness" -> merry."""
    stem = word[:-len(suffix)]
    if len(stem) < 2:
        return []
    out = [stem, stem + "e"]
    if len(stem) > 2 and stem[-1] == stem[-2]:
        out.append(stem[:-1])
    if stem.endswith("i"):
        out.append(stem[:-1] + "y")
    return out


def formed(word: str, vocab: Vocabulary) -> list[str] | None:
    """The words an unknown ``word`` is made from, or None when it is known or not made from one. A
    common word ("happiness") is only read as the noun of a mood; a word known only inside a longer
    phrase ("youngest" of "youngest possible") is still read as made from one ("most young")."""
    if not word.isalpha() or len(word) < 4 or _known(vocab, word):
        return None
    sfx = vocab.phrasing.suffixes

    def polar(w: str) -> list:
        return [r for r in _roles(vocab, w) if r.kind in ("polar", "cmp")]

    prefixes, suffixes, without = vocab.phrasing.without
    for stem in [word[len(p):] for p in prefixes if word.startswith(p)] + [
            word[:-len(x)] for x in suffixes if word.endswith(x)]:
        named = next((w for w in (stem, stem + "s") if _names(vocab, w)), None)
        if named:   # "debeard", "glassesless", "spectaclefree"
            return [without, named]
    inner = word in vocab.known   # known only inside a phrase: read only as "more X" / "most X" of a scale's word
    kinds = ("noun",) if word in vocab.common else ("superlative", "comparative") if inner else (
        "superlative", "comparative", "noun", "adverb", "inflection")
    for kind in kinds:
        for suffix in sfx.get(kind, ()):
            if not word.endswith(suffix):
                continue
            for stem in _stems(word, suffix):
                if kind in ("superlative", "comparative") and not polar(stem):
                    stem = vocab.phrasing.description_words.get(stem, stem)   # "slimmer": "more thin"
                if kind == "superlative" and polar(stem):
                    return ["most", stem]
                if kind == "superlative" and not inner and stem in vocab.known and stem in vocab.keywords:
                    return [stem]   # "the faintest smile": a faint smile, already the scale's faint end
                if kind == "comparative" and polar(stem):
                    return ["more", stem]
                if kind == "noun" and polar(stem):
                    role = polar(stem)[0]   # "merriness": the smile; "gloominess": gloomy
                    name = next((p for p, rs in vocab.lexicon.items() if len(p) == 1 and any(
                        r.kind == "name" and r.attribute == role.attribute for r in rs)), None)
                    return [name[0]] if role.value > 0 and name else [stem]
                if kind in ("adverb", "inflection") and _known(vocab, stem):
                    return [stem]
    return None


def _names(vocab: Vocabulary, word: str) -> bool:
    return any(r.kind == "name" for r in _roles(vocab, word))


def _privative(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "with no rims", "without frames" -> "with rimless", "frameless" when the vocabulary knows the -less word;
    "de-beard" -> "without beard"."""
    out, i = [], 0
    cues = sorted(vocab.phrasing.privative, key=len, reverse=True)
    prefixes, _, without = vocab.phrasing.without
    while i < len(tokens):
        if tokens[i] in prefixes and i + 1 < len(tokens) and _names(vocab, tokens[i + 1]):
            out += [without, tokens[i + 1]]
            i += 2
            continue
        cue = next((c for c in cues if tuple(tokens[i:i + len(c)]) == c), None)
        if cue and i + len(cue) < len(tokens):
            noun = tokens[i + len(cue)]
            for stem in (noun, noun.removesuffix("s")):
                if _roles(vocab, stem + "less"):
                    out.append(stem + "less")
                    i += len(cue) + 1
                    break
            else:
                out.append(tokens[i])
                i += 1
            continue
        out.append(tokens[i])
        i += 1
    return out


def _as_superlative(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "as old as it gets", "as young as he can possibly be", "old as can be": "most old"."""
    out, i = [], 0
    endings = vocab.phrasing.as_endings
    while i < len(tokens):
        k = i + 2   # "as bushy a beard as you can grow": the thing may stand between
        while k < len(tokens) and k < i + 5 and (tokens[k] in ARTICLES or any(
                r.kind == "name" for r in _roles(vocab, tokens[k]))):
            k += 1
        if tokens[i] == "as" and k < len(tokens) and tokens[k] == "as" \
                and any(r.kind in ("polar", "cmp", "name") for r in _roles(vocab, tokens[i + 1])):
            between = [t for t in tokens[i + 2:k] if t not in ARTICLES]
            j = k + 1
            while j < len(tokens) and (tokens[j] in endings or (   # "as young as the slider goes"
                    tokens[j] in ARTICLES and j + 1 < len(tokens) and tokens[j + 1] in endings)):
                j += 1
            if j > k + 1:   # something after the second "as" that only says "the far end"
                out += ["most", tokens[i + 1], *between]
                i = j
                continue
        j = i + 2   # "happy as can be", "long as possible": the first "as" left out, to the end of the clause
        while j < len(tokens) and tokens[j] in endings:
            j += 1
        if j > i + 2 and i + 1 < len(tokens) and tokens[i + 1] == "as" and (j == len(tokens) or tokens[j] in STOPS) \
                and any(r.kind in ("polar", "cmp") for r in _roles(vocab, tokens[i])):
            out += ["most", tokens[i]]
            i = j
            continue
        if tokens[i] == "maximum" and i + 1 < len(tokens) and any(   # "bangs maximum long": the longest
                r.kind == "polar" for r in _roles(vocab, tokens[i + 1])):
            out += ["most", tokens[i + 1]]
            i += 2
            continue
        if tokens[i] == "maximum" and i + 2 < len(tokens) and tokens[i + 2] in vocab.phrasing.question_measures and any(
                r.kind == "name" for r in _roles(vocab, tokens[i + 1])):   # "maximum fringe length": the fringe, maxed
            out += [tokens[i + 1], "maximum"]
            i += 3
            continue
        out.append(tokens[i])
        i += 1
    return out


def _phrase_ending(tokens: list[str], verb: int, particle: int, vocab: Vocabulary) -> bool:
    """Whether a verb and the particle right after it end a phrase the lexicon knows: "corners turned up"
    is a faint smile, not "corners increase"."""
    if particle != verb + 1:
        return False
    inner = vocab.phrasing.inner_adverbs | vocab.skipped
    for k in range(verb - 1, max(0, verb - 6) - 1, -1):
        if tokens[k] in STOPS:
            return False
        if (tokens[k], *(w for w in tokens[k + 1:particle + 1] if w not in inner)) in vocab.lexicon:
            return True
    return False


def _phrasal(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "tone down the smile", "tone the smile down": the verb and its particle read as one meaning."""
    out = list(tokens)
    i = 0
    while i < len(out):
        particles = vocab.phrasing.phrasal.get(out[i])
        if particles:
            for j in range(i + 1, min(len(out), i + 2 + PARTICLE_REACH)):
                if out[j] in STOPS or out[j] in vocab.conjunctions:
                    break
                if out[j] in particles and not _phrase_ending(out, i, j, vocab):
                    meaning = list(particles[out[j]])
                    out = out[:i] + meaning + out[i + 1:j] + out[j + 1:]
                    i += len(meaning) - 1
                    break
        i += 1
    return out


def _none_of(tokens: list[str], i: int, vocab: Vocabulary) -> int:
    """The end of "not even a hint of a smile", "not a single strand of fringe", "not one whisker" starting at
    ``i`` (a negation, then the least there could be of a thing the vocabulary names), or 0."""
    negations, skip, _ = vocab.phrasing.faint_none
    if tokens[i] not in negations:
        return 0
    j, least = i + 1, False
    while j < len(tokens) and tokens[j] in ARTICLES | skip:
        least |= tokens[j] in skip - {"even"}
        j += 1
    if j + 1 < len(tokens) and tokens[j] in vocab.phrasing.faint_nouns and tokens[j + 1] == "of":
        j, least = j + 2, True
        while j < len(tokens) and tokens[j] in ARTICLES | vocab.skipped:
            j += 1
    return j + 1 if least and j < len(tokens) and _names(vocab, tokens[j]) else 0


def _every_of(tokens: list[str], i: int, vocab: Vocabulary) -> int:
    """The end of "every single hair of the fringe", "every last whisker" starting at ``i``: all of a thing,
    said by its smallest part; the index of the thing's name, or 0."""
    before, skip = vocab.phrasing.every
    if tokens[i] not in before:
        return 0
    j = i + 1
    while j < len(tokens) and tokens[j] in skip:
        j += 1
    if j + 1 < len(tokens) and tokens[j] in vocab.phrasing.faint_nouns and tokens[j + 1] == "of":
        j += 2
        while j < len(tokens) and tokens[j] in ARTICLES | vocab.skipped:
            j += 1
    return j if j > i + 1 and j < len(tokens) and _names(vocab, tokens[j]) else 0


def _faint(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "a whisper of a smile", "barely a smile", "hint of stubble": "tiny <name>", the faintest degree;
    negated ("not even a hint of a smile", "not a single strand of fringe"): "without <name>"."""
    out, i = [], 0
    words = sorted(vocab.phrasing.faint_words, key=len, reverse=True)
    while i < len(tokens):
        every = _every_of(tokens, i, vocab)
        if every:   # "every last whisker": the beard itself
            i = every
            continue
        end = _none_of(tokens, i, vocab)
        if end:
            out += [vocab.phrasing.faint_none[2], tokens[end - 1]]
            i = end
            continue
        j = i
        word = next((w for w in words if tuple(tokens[j:j + len(w)]) == w), None)
        if word:
            j += len(word)
        while j < len(tokens) and tokens[j] in ARTICLES:
            j += 1
        if j + 1 < len(tokens) and tokens[j] in vocab.phrasing.faint_nouns and tokens[j + 1] == "of":
            j += 2
        elif not word:
            out.append(tokens[i])
            i += 1
            continue
        while j < len(tokens) and tokens[j] in ARTICLES | vocab.skipped:
            j += 1
        if j < len(tokens) and any(r.kind == "name" for r in _roles(vocab, tokens[j])):
            out += ["tiny", tokens[j]]
            i = j + 1
            continue
        out.append(tokens[i])
        i += 1
    return out


def _hair_at(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "hair falling on the forehead", "her forehead, is it covered by hair?": hair said near the forehead
    is the fringe."""
    hair, near, fringe = vocab.phrasing.fringe_hair
    counted, counts, counted_as = vocab.phrasing.fringe_counted
    out: list[list[str]] = [[t] for t in tokens]
    for i, tok in enumerate(tokens):
        if tok not in hair:
            continue
        window = [t for side in (tokens[i - 1::-1] if i else [], tokens[i + 1:])
                  for t in until(side, SENTENCE_ENDS)[:HAIR_REACH]]
        if set(window) & near:   # "two thin strands on her forehead": a few strands of fringe
            out[i] = [fringe]
            if tok in counted and set(tokens[max(0, i - 3):i]) & counts:
                out[i] = list(counted_as[1:] if counted_as[0] in tokens[max(0, i - 3):i] else counted_as)
    return [t for ts in out for t in ts]


def _someone_else(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "my grandma wears thick glasses, give her those": a person who is someone else ("my grandma") says
    nothing of the face, nor does the one a relation is of ("the dad of a teenager"); "make her look like
    my grandma" compares with them and stays."""
    before, person = vocab.phrasing.someone_else
    kin, joins = vocab.phrasing.kin
    out = list(tokens)
    for i in range(1, len(tokens)):
        j = i - 1
        while j > 0 and tokens[j] in ARTICLES:
            j -= 1
        related = j > 0 and tokens[j] in joins and tokens[j - 1] in kin   # "the dad of a teenager"
        if not related and (tokens[i - 1] not in before or (i > 1 and tokens[i - 2] in vocab.phrasing.simile)):
            continue
        for size in (2, 1):
            roles = vocab.lexicon.get(tuple(tokens[i:i + size]), ())
            if any(r.kind in ("degree", "look") for r in roles) and not any(r.kind == "name" for r in roles):
                out[i:i + size] = [person] * size
                break
    return out


def until(tokens: list[str], stops: frozenset[str]) -> list[str]:
    """``tokens`` up to the first of ``stops``."""
    return tokens[:next((k for k, t in enumerate(tokens) if t in stops), len(tokens))]


def _intensity(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "way older": "much older"; "way" elsewhere ("no way", "the other way") is left alone. "too much
    old": "too old" (a learner's "too much" before an adjective)."""
    words = vocab.phrasing.before_comparatives
    out = [words[t] if t in words and i + 1 < len(tokens) and (tokens[i + 1] == "more" or any(
        r.kind == "cmp" for r in _roles(vocab, tokens[i + 1]))) else t for i, t in enumerate(tokens)]
    return [t for i, t in enumerate(out) if not (t == "much" and 0 < i < len(out) - 1 and out[i - 1] == "too" and any(
        r.kind == "polar" for r in _roles(vocab, out[i + 1])))]


def _clause_at(tokens: list[str], i: int) -> tuple[int, int]:
    """(start, end) of the clause around position ``i``: the tokens between stops."""
    start = next((k + 1 for k in range(i - 1, -1, -1) if tokens[k] in STOPS), 0)
    end = next((k for k in range(i, len(tokens)) if tokens[k] in STOPS), len(tokens))
    return start, end


def _unnumbered_years(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "take away from him some years" -> "younger from him some", "add a few years to her" -> "older a few
    to her": years with no number of them, after a verb that takes them away or adds them, in the same clause."""
    entry = vocab.phrasing.years_unnumbered
    out = list(tokens)
    for i, tok in enumerate(tokens):
        before = tokens[i - 1] if i else ""
        numbered = (before.isdigit() or before in vocab.numbers) and before not in entry["vague"]
        if tok not in entry["years"] or numbered or before in entry["not_after"]:
            continue
        start, end = _clause_at(tokens, i)
        start = max(start, i - YEARS_REACH)
        verb = next(((k, way) for k in range(i - 1, start - 1, -1) for way in ("off", "on")
                     if tokens[k] in entry[way]), None)
        if verb:
            out[verb[0]], out[i] = entry["read_as"][verb[1]], ""
            particle = next((k for k in range(verb[0] + 1, end) if tokens[k] in entry["particles"]), None)
            if particle is not None:   # "shave some years off him": the particle is the verb's
                out[particle] = ""
    return [t for t in out if t]


def _measured_hair(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "a beard 10 cm long" -> "a beard long beard", "5 mm of stubble" -> "stubble of stubble": a number of a
    unit of length, in a clause that names no other attribute, is the beard's degree for that length."""
    entry = vocab.phrasing.measured_hair
    out: list[str] = []
    skip = 0
    for i, tok in enumerate(tokens):
        if skip:
            skip -= 1
            continue
        glued = re.fullmatch(r"(\d+)([a-z]+)", tok)
        number, unit = (glued.group(1), glued.group(2)) if glued else (tokens[i - 1] if i else "", tok)
        count = int(number) if number.isdigit() else vocab.numbers.get(number)
        if unit not in entry["units"] or not count:
            out.append(tok)
            continue
        start, end = _clause_at(tokens, i)   # only for a unit: the clause must name no other attribute
        if {r.attribute for t in tokens[start:end] for r in _roles(vocab, t) if r.kind == "name"} - {"beard"}:
            out.append(tok)
            continue
        length = count * entry["units"][unit]
        if not glued:
            out.pop()
        out.extend(next(p for top, p in entry["read_as"] if length <= top))
        skip = int(i + 1 < len(tokens) and tokens[i + 1] in entry["after"])
    return out


def _hanging(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "make her bangs come down much lower", "a fringe that sits higher": after a verb of hanging in the
    same clause, "lower" is longer and "higher" shorter."""
    verbs, read_as = vocab.phrasing.hanging
    out = list(tokens)
    for i, tok in enumerate(tokens):
        if tok in read_as and any(t in verbs for t in tokens[_clause_at(tokens, i)[0]:i]):
            out[i] = read_as[tok]
    return out


def _negated_measure(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "i don't want him to look this old" -> "i do want him to look less old": a negation, then "this" or
    "so" right before a word of a scale in the same clause, is less of it."""
    negations, measures, less = vocab.phrasing.negated_measure
    out = list(tokens)
    for i in range(1, len(tokens) - 1):
        following = next((t for t in tokens[i + 1:] if t not in ARTICLES), "")   # "such a long beard"
        if tokens[i] not in measures or not any(r.kind == "polar" for r in _roles(vocab, following)):
            continue
        start, _ = _clause_at(tokens, i)
        negation = next((k for k in range(i - 1, start - 1, -1) if out[k] in negations), None)
        if negation is not None:
            out[negation], out[i] = "", less
    return [t for t in out if t]


def _out_in(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "clear lenses out, dark thick shades in": "swap clear lenses for dark thick shades", when the old
    part names an attribute, the new one is about it too ("beard off, bangs on" is two edits) and the two
    parts are the whole sentence."""
    outs, ins, (verb, to) = vocab.phrasing.swap_out_in
    stops = {",", ";", "-"}
    if "," not in tokens:
        return tokens
    end = len(tokens) - (tokens[-1] in STOPS)
    comma = tokens.index(",")
    old, new = tokens[:comma], tokens[comma + 1:end]
    named = {r.attribute for t in old[:-1] for r in _roles(vocab, t) if r.kind == "name"}
    if len(old) > 1 and len(new) > 1 and old[-1] in outs and new[-1] in ins and not stops & set(new) \
            and named & {r.attribute for t in new[:-1] for r in _roles(vocab, t)}:   # of one attribute
        return [verb, *old[:-1], to, *new[:-1], *tokens[end:]]
    return tokens


def _capped_word(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "a long beard, not too much bushy": a learner's "not too bushy", not "not too much" of the edit."""
    out = []
    for i, tok in enumerate(tokens):
        capped = any(r.kind == "moderate" for r in _roles(vocab, tok))
        if capped and i + 1 < len(tokens) and any(r.kind in ("polar", "degree") for r in _roles(vocab, tokens[i + 1])):
            out += ["not", "too"]
        else:
            out.append(tok)
    return out


def rewrite(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """The rewrites above, in order, and intensity words that only are one before a comparative."""
    words = []
    for tok in _someone_else(_hair_at(tokens, vocab), vocab):
        words.extend(formed(tok, vocab) or [tok])
    words = _intensity(words, vocab)   # after word formation: "way perkier" is "much more perky"
    words = _hanging(_negated_measure(_unnumbered_years(_measured_hair(words, vocab), vocab), vocab), vocab)
    words = _out_in(_capped_word(words, vocab), vocab)
    return _faint(_phrasal(_as_superlative(_privative(words, vocab), vocab), vocab), vocab)
