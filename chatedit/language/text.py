"""From a message to clauses of matched phrases: normalise, split, scan."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from chatedit.attributes import MAX_DEGREE

from .phrasing import formed, rewrite, until
from .vocabulary import Role, Vocabulary, load_vocabulary, replace_phrases

logger = logging.getLogger(__name__)

PUNCTUATION = frozenset({",", ".", ";", "!", "?", ":"})


# --------------------------------------------------------------------------- normalisation

_TOKEN = re.compile(r"amount:[0-9]+|[a-z0-9]+(?:'[a-z]+)?|[,.;!?:]")
_PERCENT = re.compile(r"\b(\d{1,3})\s*(?:%|percent\b|per cent\b)")
_SIGNED = re.compile(r"(?<![\w.])([+-])\s?([1-5])\b(?!\s*(?:%|years?\b|yrs\b))")
# "on the zero-to-five scale", "on a scale of 0 to 5", "3 out of 5": the scale's own range names no degree
_RANGE = r"(?:0|1|5|zero|one|five)[\s-]*(?:to|through|-)[\s-]*(?:0|1|5|zero|one|five)"
_SCALE = re.compile(rf"\b(?:on|in|using)\s+(?:a|the|this|that|our|your)\s+(?:{_RANGE}\s+(?:point\s+)?(?:scale|range)"
                    rf"|(?:scale|range)\s+(?:of|from)\s+{_RANGE})\b|\bout\s+of\s+(?:5|five)\b")


def _expand(token: str, rules: dict) -> list[str]:
    """Expand one contraction: "don't" -> ["do", "not"], "she's" -> ["she", "is"], "40's" -> ["40s"]."""
    if token in rules["whole"]:
        return list(rules["whole"][token])
    for suffix, words in rules["suffixes"].items():
        if token.endswith(suffix):
            base = token[:-len(suffix)]
            if suffix == "'s" and base.isdigit():
                return [base + "s"]
            if suffix == "'s" and base in rules["is_after"]:
                return [base, "is"]
            return [base, *words]
    base, rest = token.split("'", 1)
    return [base, rest]   # "o'clock" -> "o", "clock"


def _within_one(a: str, b: str) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance between a and b is exactly 1."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


def _correct(word: str, vocab: Vocabulary) -> str:
    if len(word) < 4 or not word.isalpha() or word in vocab.known or formed(word, vocab):
        return word   # "sunnier" is more sunny, not "sunnies"
    candidates = sorted((k for k in vocab.keywords if _within_one(word, k)), key=lambda k: (-len(k), k))
    meanings = {frozenset((r.kind, r.attribute) for r in vocab.lexicon.get((k,), ())) for k in candidates}
    if candidates and len(meanings) == 1:   # "glases": glasses or glass, the same either way
        logger.debug("typo %r read as %r", word, candidates[0])
        return candidates[0]
    return word


def _age_numbers(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """Rewrite ages in years ("look 40", "a 70 year old", "in her 50s") as one token "age:<years>"."""
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in ("a", "an") and nxt in vocab.numbers and i + 2 < len(tokens) and tokens[i + 2] in vocab.age_after:
            i += 1   # "take a few years off": the article stands between the verb and its number
            continue
        years = None
        if re.fullmatch(r"\d{2}s", tok):
            years = int(tok[:-1]) + 4   # "in his 30s": 34, a young adult, as "thirties" is
        else:
            value = int(tok) if tok.isdigit() else (vocab.numbers.get(tok) if tok not in vocab.not_ages else None)
            if value is not None and value >= 10 and nxt in vocab.numbers and vocab.numbers[nxt] < 10:
                value, i = value + vocab.numbers[nxt], i + 1   # "forty five"
                nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            after = tokens[i + 2] if i + 2 < len(tokens) else ""
            left = tokens[i + 4] if i + 4 < len(tokens) and tokens[i + 3] == "of" else ""
            if value is not None and nxt in vocab.age_after and after == "out" and left in vocab.phrasing.years_out_of:
                out.append(f"age:{value + vocab.phrasing.years_out_of[left]}")   # "twenty years out of college": 42
                i += 5
                continue
            off_after = bool(out) and out[-1] in vocab.years_off and after == "off"   # "take 10 years off"
            # "remove ten years from him", "remove him ten years", "take from her twenty years", "add him ten
            # years": the verb before its object, the years after
            k = len(out) - 1
            while k > 0 and out[k] in ("him", "her", "them", "from") and len(out) - k <= 3:
                k -= 1
            taken = vocab.phrasing.years_unnumbered["off"]
            apart = k < len(out) - 1 or after in ("from", "off") or (k >= 0 and out[k] in taken)
            way = ("younger" if out[k] in taken else "older" if out[k] in vocab.phrasing.years_unnumbered["on"]
                   else None) if k >= 0 else None
            if value is not None and nxt in vocab.age_after and apart and way:
                out[k:] = [way, f"years:{value}"]
                i += 2 + (after == "off")
                continue
            off_before = len(out) >= 2 and out[-2] in vocab.years_off and out[-1] == "off"   # "take off 10 years"
            before = vocab.age_change_before | vocab.relative_years | vocab.phrasing.years_after
            relative = (out and out[-1] in before) or after in vocab.relative_years or off_after or off_before
            # "age him ten years" ("older" before), "wind the age back a decade"
            if value is not None and nxt in vocab.age_after and relative:
                # "add 20 years", "5 years younger": a change, not an age; "add"/"take ... off" say which way
                if out and out[-1] in vocab.age_change_before - {"by"}:
                    out[-1] = "older"
                elif off_before:
                    out[-2:] = ["younger"]
                elif off_after:
                    out[-1] = "younger"
                    i += 1   # the "off" after "years"
                out.append(f"years:{value}")
                i += 2
                continue
            degree = value is not None and value <= MAX_DEGREE and out and out[-1] == vocab.years_attribute
            if value is not None and nxt in vocab.age_after and out and out[-1] in vocab.phrasing.duration_before:
                pass   # "a hermit living there since forty years": a span of time, not an age
            elif degree and nxt not in vocab.age_after:
                pass   # "age 4", as "smile 2": a degree of the scale, not a four-year-old
            elif value is not None and tok not in vocab.phrasing.years_unnumbered["vague"] \
                    and nxt not in vocab.phrasing.steps | vocab.phrasing.durations and (
                    nxt in vocab.age_after or (out and out[-1] in vocab.age_before
                                               and not any(r.attribute for r in vocab.lexicon.get((nxt,), ())))):
                # "maybe three wispy strands": a count of what a word of the face names, not an age
                years = value
            elif value is not None and value >= 10 and out and (
                    out[-1] in vocab.age_before_adult   # "show me him at 17"
                    or (len(out) >= 2 and out[-1] in vocab.age_object[1] and out[-2] in vocab.age_object[0])
                    or (out[-1] == "to" and vocab.age_to & set(out))):
                years = value   # "make him 25", "age her to 50": too many for a degree, so an age
            if years is not None and nxt in vocab.age_after:
                i += 1
                while i + 1 < len(tokens) and tokens[i + 1] in vocab.age_after | {"old"}:
                    i += 1
        out.append(f"age:{years}" if years is not None else tok)
        i += 1
    return out


VERB_KINDS = ("add", "make", "remove", "reduce", "increase", "decrease", "action", "change_from", "restore")


def _attributes(words: list[str], vocab: Vocabulary) -> set[str]:
    return {r.attribute for w in words for r in vocab.lexicon.get((w,), ()) if r.attribute}


def _verb(word: str, vocab: Vocabulary) -> bool:
    return word in vocab.phrasing.phrasal or any(r.kind in VERB_KINDS for r in vocab.lexicon.get((word,), ()))


def _instead(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "instead of X": X is the old state. Opening a sentence, it runs to a comma or a verb and the rest
    is the new one: "instead of the beard, give him stubble" -> "swap the beard for give him stubble", or,
    when the two are about different attributes, "instead of glasses, a beard" -> "without glasses, a
    beard". After the new state ("a gentle smile instead of the laugh") it only names what the sentence
    already asks for and is dropped, or it is another attribute, which goes: "glasses, without a beard"."""
    phrases = sorted(vocab.phrasing.swap_instead, key=len, reverse=True)
    without = vocab.phrasing.without[2]
    out, i = [], 0
    while i < len(tokens):
        cue = next((p for p in phrases if tuple(tokens[i:i + len(p)]) == p), ())
        opening = not out or out[-1] in PUNCTUATION
        if len(cue) == 1 and not opening and _verb(out[-1], vocab):
            i += 1   # "give instead a long beard": an adverb after the verb, the new state follows
            continue
        start = end = i + len(cue)
        while cue and end < len(tokens) and tokens[end] not in PUNCTUATION and not (
                opening and end > start and _verb(tokens[end], vocab)) \
                and not (not opening and tokens[end] in vocab.conjunctions):
            end += 1
        old = tokens[start:end]
        if opening and old and end < len(tokens) and tokens[end] not in PUNCTUATION - {","}:
            rest = end + (tokens[end] == ",")
            new = _attributes(until(tokens[rest:], PUNCTUATION), vocab)
            same = _attributes(old, vocab) & new or not new
            out += [vocab.phrasing.swap_instead_verb, *old, "for"] if same else [without, *old, ","]
            i = rest
        elif not opening and old:
            sentence = until(out[::-1], PUNCTUATION)
            if not _attributes(old, vocab) <= _attributes(sentence, vocab):
                out += [",", without, *old]
            i = end
        else:
            out.append(tokens[i])
            i += 1
    return out


def _labelled(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """ "beard: gone", "smile: bigger": a name, a colon and what it should be are one clause."""
    return [t for i, t in enumerate(tokens) if not (t == ":" and i and any(
        r.kind == "name" for r in vocab.lexicon.get((tokens[i - 1],), ())))]


def normalise(text: str, vocab: Vocabulary | None = None) -> list[str]:
    """Lower-case tokens with contractions expanded, typos fixed and canonical phrases applied."""
    vocab = vocab or load_vocabulary()
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    # "a 60% smile": that share of the scale, as a degree; "smile +2", "-1 age": a change of so many degrees
    text = _SCALE.sub(" ", text)
    text = _PERCENT.sub(lambda m: f" level {min(MAX_DEGREE, int(int(m[1]) * MAX_DEGREE / 100 + 0.5))} ", text)
    text = re.sub(r"\s*[=:]\s*(?=\d)", " level ", text)   # "beard=3", "smile: 3"
    text = _SIGNED.sub(lambda m: f" {'more' if m[1] == '+' else 'less'} amount:{m[2]} ", text)
    suffixes = "|".join(vocab.phrasing.without[1])
    text = re.sub(rf"(?<=[a-z])-(?=(?:{suffixes})\b)", "", text)   # "glasses-less": one word, "glassesless"
    text = re.sub(r"\s*[\u2014\u2013]\s*|\s+--?\s+", " , ", text)   # a dash between words parts clauses as a comma does
    text = re.sub(r"[-_/]", " ", text)
    tokens, bare = [], vocab.contractions.get("bare", {})   # "dont": a contraction typed without its apostrophe
    for tok in _TOKEN.findall(text):
        tokens.extend(_expand(tok, vocab.contractions) if "'" in tok else bare.get(tok, [tok]))
    tokens = _instead(_labelled([_correct(t, vocab) for t in tokens], vocab), vocab)
    return rewrite(_age_numbers(replace_phrases(tokens, vocab.canonical), vocab), vocab)


# --------------------------------------------------------------------------- clauses


@dataclass
class Clause:
    words: list[str]
    joined: bool = False        # follows a conjunction ("and", "or"): may inherit the previous verb
    question: bool = False
    asked: bool = False         # in a sentence that ends with a question mark: "his age, roughly?"
    framed: bool = False        # opened with a question or wish frame ("what would ..."): a request, never a remark
    sentence: int = 0

    @property
    def text(self) -> str:
        return " ".join(self.words) + (" ?" if self.question else "")


def split_clauses(tokens: list[str], vocab: Vocabulary) -> list[Clause]:
    clauses, current, joined, sentence = [], [], False, 0
    for tok in tokens + ["."]:
        if tok in PUNCTUATION or tok in vocab.conjunctions:
            if current:
                clauses.append(Clause(current, joined, tok == "?", sentence=sentence))
            elif tok == "?" and clauses:
                clauses[-1].question = True
            if tok == "?":
                for clause in clauses[sentence:]:
                    clause.asked = True
            if tok in PUNCTUATION - {",", ":"}:   # "describe this face: glasses, beard": one sentence
                sentence = len(clauses)
            current, joined = [], tok in vocab.conjunctions
        else:
            current.append(tok)
    return clauses


@dataclass
class Span:
    """A matched phrase and its possible meanings; ``used`` once a pattern has consumed it."""

    words: tuple[str, ...]
    roles: tuple[Role, ...]
    used: bool = False

    def get(self, kind: str) -> list[Role]:
        return [r for r in self.roles if r.kind == kind]

    def has(self, *kinds: str) -> bool:
        return any(r.kind in kinds for r in self.roles)

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _match(words: list[str], i: int, longest: int, vocab: Vocabulary) -> tuple[int, tuple[str, ...]]:
    """(words taken, the lexicon phrase they are) for the longest phrase at ``i``, or (0, ()). A phrase
    may hold adverbs that change nothing ("forehead completely uncovered" is "forehead uncovered")."""
    inner = vocab.phrasing.inner_adverbs
    exact = next((n for n in range(min(longest, len(words) - i), 0, -1) if tuple(words[i:i + n]) in vocab.lexicon), 0)
    for size in range(min(longest + 2, len(words) - i), exact + 1, -1):
        window = words[i:i + size]
        phrase = (window[0], *(w for w in window[1:] if w not in inner))
        if window[-1] not in inner and len(phrase) > exact and phrase in vocab.lexicon:
            return size, phrase
    return exact, tuple(words[i:i + exact])


def scan(words: list[str], vocab: Vocabulary) -> list[Span]:
    """Longest-first phrase matching over the clause's words, articles and possessives dropped."""
    words = [w for w in words if w not in vocab.skipped]
    longest = max(map(len, vocab.lexicon))
    spans, i = [], 0
    while i < len(words):
        if words[i].startswith("amount:"):   # "+2": so many degrees
            spans.append(Span((words[i],), (Role("intensity", value=min(int(words[i][7:]), MAX_DEGREE)),)))
            i += 1
            continue
        if words[i].startswith("years:"):   # a change of so many years: an amount of degrees, at least one
            amount = max(1, round(int(words[i][6:]) / vocab.years_per_degree))
            spans.append(Span((words[i],), (Role("intensity", value=min(amount, MAX_DEGREE)),)))
            i += 1
            continue
        if words[i].startswith("age:"):
            years = int(words[i][4:])
            degree = next((d for lo, hi, d in vocab.age_years if lo <= years <= hi), MAX_DEGREE)
            spans.append(Span((words[i],), (Role("degree", vocab.years_attribute, degree), Role("vivid"))))
            i += 1
            continue
        count = int(words[i]) if words[i].isdigit() else vocab.numbers.get(words[i])
        size = 2 if i + 1 < len(words) and words[i + 1] in vocab.phrasing.steps else 1
        degree = i and any(r.kind == "degree_number" for r in vocab.lexicon.get((words[i - 1],), ()))   # "to 4 degrees"
        if count is not None and count <= MAX_DEGREE and not degree and (
                size == 2 or (i and words[i - 1] in vocab.phrasing.by)):
            spans.append(Span(tuple(words[i:i + size]), (Role("intensity", value=count),)))   # "two steps", "by 2"
            i += size
            continue
        size, gapped = _match(words, i, longest, vocab)
        if size > 1 and i + 1 < len(words):
            # "very thick frame": "very thick" is a beard's, "thick frame" the glasses': the longer reach wins
            later, phrase = _match(words, i + 1, longest, vocab)
            mine = {r.attribute for r in vocab.lexicon[gapped] if r.attribute}
            theirs = {r.attribute for r in vocab.lexicon.get(phrase, ()) if r.attribute}
            if i + 1 + later > i + size and theirs and not mine & theirs and all(r.named for r in vocab.lexicon[gapped]):
                size, gapped = 1, (words[i],)
        if size and gapped in vocab.lexicon:
            spans.append(Span(tuple(words[i:i + size]), vocab.lexicon[gapped]))
            i += size
        else:
            spans.append(Span((words[i],), ()))
            i += 1
    return spans
