"""Rewrites that give phrasing a structure the vocabulary can read (``prompts/lexicon.yaml``).

Run on normalised tokens, before clauses are split:

1. word formation: an unknown word made from a known one ("cheerier" -> "more cheery", "thickest"
   -> "most thick", "merriness" -> "smile", "trimmed" -> "trim"; "no rims" -> "rimless");
2. superlatives said with "as": "as old as it gets", "as young as he can possibly be" -> "most old";
3. phrasal verbs, the particle next to the verb or after its object: "tone the smile down" ->
   "decrease the smile", "crack up" -> "laugh";
4. the faintest of a thing: "barely a whisper of a smile" -> "tiny smile".
"""

from __future__ import annotations

from .vocabulary import Vocabulary

ARTICLES = frozenset({"a", "an", "the"})
STOPS = frozenset({",", ".", ";", "!", "?", ":"})
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


def _formed(word: str, vocab: Vocabulary) -> list[str] | None:
    """The words an unknown ``word`` is made from, or None when it is known or not made from one."""
    if not word.isalpha() or len(word) < 4 or _known(vocab, word) or word in vocab.known:
        return None
    sfx = vocab.phrasing.suffixes

    def polar(w: str) -> list:
        return [r for r in _roles(vocab, w) if r.kind in ("polar", "cmp")]

    for kind in ("superlative", "comparative", "noun", "adverb", "inflection"):
        for suffix in sfx.get(kind, ()):
            if not word.endswith(suffix):
                continue
            for stem in _stems(word, suffix):
                if kind in ("superlative", "comparative") and not polar(stem):
                    stem = vocab.phrasing.description_words.get(stem, stem)   # "slimmer": "more thin"
                if kind == "superlative" and polar(stem):
                    return ["most", stem]
                if kind == "superlative" and stem in vocab.known and stem in vocab.keywords:
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


def _privative(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "with no rims", "without frames" -> "with rimless", "frameless" when the vocabulary knows the -less word."""
    out, i = [], 0
    cues = sorted(vocab.phrasing.privative, key=len, reverse=True)
    while i < len(tokens):
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
    """ "as old as it gets", "as young as he can possibly be": "most old"."""
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
            while j < len(tokens) and tokens[j] in endings:
                j += 1
            if j > k + 1:   # something after the second "as" that only says "the far end"
                out += ["most", tokens[i + 1], *between]
                i = j
                continue
        out.append(tokens[i])
        i += 1
    return out


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
                if out[j] in particles:
                    meaning = list(particles[out[j]])
                    out = out[:i] + meaning + out[i + 1:j] + out[j + 1:]
                    i += len(meaning) - 1
                    break
        i += 1
    return out


def _faint(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "a whisper of a smile", "barely a smile", "hint of stubble": "tiny <name>", the faintest degree."""
    out, i = [], 0
    words = sorted(vocab.phrasing.faint_words, key=len, reverse=True)
    while i < len(tokens):
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


def _intensity(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "way older": "much older"; "way" elsewhere ("no way", "the other way") is left alone. "too much
    old": "too old" (a learner's "too much" before an adjective)."""
    words = vocab.phrasing.before_comparatives
    out = [words[t] if t in words and i + 1 < len(tokens) and (tokens[i + 1] == "more" or any(
        r.kind == "cmp" for r in _roles(vocab, tokens[i + 1]))) else t for i, t in enumerate(tokens)]
    return [t for i, t in enumerate(out) if not (t == "much" and 0 < i < len(out) - 1 and out[i - 1] == "too" and any(
        r.kind == "polar" for r in _roles(vocab, out[i + 1])))]


def rewrite(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """The four rewrites above, in order, and intensity words that only are one before a comparative."""
    formed = []
    for tok in _intensity(tokens, vocab):
        formed.extend(_formed(tok, vocab) or [tok])
    return _faint(_phrasal(_as_superlative(_privative(formed, vocab), vocab), vocab), vocab)
