"""The built-in language understanding: one user message plus dialog context -> intents.

Deterministic and pure Python. Every word it knows lives in ``prompts/language.yaml``; this
module only knows roles (an attribute name, a degree phrase, a comparative, a verb that adds or
removes, a follow-up) and how they combine. ``parse`` turns text into :class:`Intent` objects;
``intents_to_calls`` turns those into the agent's tool calls.

How a message is read:
1. normalise: lower-case, expand contractions, fix one-edit typos, apply canonical phrases;
2. split into clauses at punctuation and conjunctions ("older and with a beard");
3. a leading "yes"/"no" answers the system's pending suggestion;
4. each clause is a command (undo, reset, ...), or is scanned for cues: degree phrases,
   comparatives, add/remove verbs, intensity words, negation, follow-ups, out-of-scope things;
5. cues are bound to attributes (named in the clause, by a pronoun or an earlier clause, or the
   attribute in focus) and merged per attribute into one edit.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import yaml

from chatedit.attributes import MAX_DEGREE, attribute_names

logger = logging.getLogger(__name__)

PUNCTUATION = frozenset({",", ".", ";", "!", "?", ":"})
# Cue levels, strongest first: a degree phrase beats "remove", which beats a comparative, ...
DEGREE, REMOVE, CHANGE, RELATIVE, ADD, WEAK = range(6)
TOOL_KINDS = {"edit_attribute": "edit", "undo": "undo", "redo": "redo", "reset": "reset",
              "new_face": "new_face", "describe": "describe"}


@dataclass(frozen=True)
class DialogContext:
    focus: str | None = None            # attribute in focus (the last one edited or discussed)
    last_change: int | None = None     # signed degrees of the last edit on the focus attribute
    suggestion: dict | None = None     # pending question: {"name": "edit_attribute", "args": {...}}
    degrees: dict[str, int] | None = None   # current degrees, when known


@dataclass(frozen=True)
class Intent:
    kind: str   # "edit" | "undo" | "redo" | "reset" | "new_face" | "describe" | "decline" | "content" | "out_of_scope"
    #             | "unknown"
    attribute: str | None = None
    target: int | None = None
    change: int | None = None
    steps: int | None = None     # undo/redo count
    seed: int | None = None      # new_face
    thing: str | None = None     # out_of_scope noun, e.g. "background"


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Role:
    """One meaning of a phrase: ``kind`` plus, for attribute roles, the attribute and a value."""

    kind: str                  # "name" | "degree" | "cmp" | "polar" | "intensity" | "followup" | "oos" | grammar key
    attribute: str | None = None
    value: int = 0             # degree, sign or amount
    named: bool = False        # only meaningful when the attribute is named (e.g. "short", "longer")
    thing: str | None = None   # out-of-scope thing


@dataclass(frozen=True)
class Vocabulary:
    lexicon: dict[tuple[str, ...], tuple[Role, ...]]
    canonical: dict[tuple[str, ...], tuple[str, ...]]
    amounts: dict[str, int]
    answers: dict[str, frozenset[tuple[str, ...]]]
    commands: dict[str, tuple[re.Pattern, ...]]
    numbers: dict[str, int]
    years_attribute: str
    age_years: tuple[tuple[int, int, int], ...]
    age_before: frozenset[str]
    age_after: frozenset[str]
    age_change_before: frozenset[str]
    conjunctions: frozenset[str]
    contractions: dict          # {"whole": {...}, "suffixes": {...}, "is_after": [...]}
    skipped: frozenset[str]     # articles and possessives, ignored when matching phrases
    fillers: frozenset[str]     # words that leave "glasses please" a bare name
    not_ages: frozenset[str]
    relative_years: frozenset[str]   # "5 years younger": comparatives of the years attribute
    add_degree: dict[str, int | None]
    generic_things: frozenset[str]   # out-of-scope things that yield to a more specific one
    keywords: frozenset[str]   # typo-correction targets
    known: frozenset[str]      # words never corrected


def _phrases(items) -> list[tuple[str, ...]]:
    bad = [p for p in items if not isinstance(p, str)]
    if bad:
        raise ValueError(f"language.yaml has non-text phrases {bad!r}; quote YAML words like 'no' and 'off'")
    return [tuple(p.split()) for p in items]


@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    data = yaml.safe_load(resources.files("chatedit.prompts").joinpath("language.yaml").read_text())
    lexicon: dict[tuple[str, ...], list[Role]] = defaultdict(list)

    def add(items, role: Role) -> None:
        for phrase in _phrases(items):
            lexicon[phrase].append(role)

    # 1. attribute roles
    names = attribute_names()
    for name in data["attributes"]:
        if name not in names:
            raise ValueError(f"language.yaml describes attribute {name!r}, not in attributes.yaml ({', '.join(names)})")
    add_degree = {}
    for name, entry in data["attributes"].items():
        add_degree[name] = entry.get("add")
        add(entry.get("names", []), Role("name", name))
        for named, key in ((False, "degrees"), (True, "named_degrees")):
            for degree, items in (entry.get(key) or {}).items():
                if not 0 <= int(degree) <= MAX_DEGREE:
                    raise ValueError(f"{name}.{key} has degree {degree}, outside 0..{MAX_DEGREE}")
                add(items, Role("degree", name, int(degree), named))
        for named, prefix in ((False, ""), (True, "named_")):
            add(entry.get(prefix + "up") or [], Role("cmp", name, 1, named))
            add(entry.get(prefix + "down") or [], Role("cmp", name, -1, named))
            for word, sign in (entry.get(prefix + "polar") or {}).items():
                add([word], Role("polar", name, int(sign), named))

    # 2. grammar, intensity, follow-ups, out-of-scope things
    for kind, items in data["grammar"].items():
        add(items, Role(kind))
    for word, amount in data["intensity"].items():
        add([word], Role("intensity", value=int(amount)))
    for key, sign in (("same", 1), ("opposite", -1)):
        add(data["followups"][key], Role("followup", value=sign))
    for thing, items in data["out_of_scope"].items():
        add(items, Role("oos", thing=thing))

    canonical = {p: tuple(str(target).split()) for target, items in data["canonical"].items() for p in _phrases(items)}
    single = {w for phrase in lexicon for w in phrase} | {w for phrase in canonical for w in phrase}
    keyword_source = [p for p, roles in lexicon.items()
                      if any(r.attribute or r.kind in ("add", "remove", "increase", "decrease") for r in roles)]
    keywords = {w for p in keyword_source for w in p if len(w) >= 4 and w.isalpha()}
    keywords |= {"undo", "redo", "reset", "describe", "another", "original"}
    return Vocabulary(
        lexicon={k: tuple(v) for k, v in lexicon.items()},
        canonical=canonical,
        amounts={k: int(v) for k, v in data["amounts"].items()},
        answers={k: frozenset(_phrases(v)) for k, v in data["answers"].items()},
        commands={k: tuple(re.compile(p) for p in v) for k, v in data["commands"].items()},
        numbers={str(k): int(v) for k, v in data["numbers"].items()},
        years_attribute=data["years_attribute"],
        age_years=tuple(tuple(int(x) for x in row) for row in data["age_years"]),
        age_before=frozenset(data["age_number_before"]),
        age_after=frozenset(data["age_number_after"]),
        age_change_before=frozenset(data["age_change_before"]),
        conjunctions=frozenset(data["grammar"]["conjunction"]),
        add_degree=add_degree,
        generic_things=frozenset(data["out_of_scope_generic"]),
        keywords=frozenset(keywords),
        contractions=data["contractions"],
        skipped=frozenset(data["skipped"]),
        fillers=frozenset(data["fillers"]),
        not_ages=frozenset(data["not_ages"]),
        relative_years=frozenset(p[0] for p, roles in lexicon.items() if len(p) == 1 and any(
            r.kind == "cmp" and r.attribute == data["years_attribute"] and not r.named for r in roles)),
        known=frozenset(single | {w for p in _phrases(data["known_words"]) for w in p} | set(data["numbers"])
                        | set(data["skipped"]) | {w for v in data["answers"].values() for p in _phrases(v) for w in p}),
    )


# --------------------------------------------------------------------------- normalisation

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[,.;!?:]")


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
    if len(word) < 4 or not word.isalpha() or word in vocab.known:
        return word
    candidates = sorted((k for k in vocab.keywords if _within_one(word, k)), key=lambda k: (-len(k), k))
    meanings = {frozenset((r.kind, r.attribute) for r in vocab.lexicon.get((k,), ())) for k in candidates}
    if candidates and len(meanings) == 1:   # "glases": glasses or glass, the same either way
        logger.debug("typo %r read as %r", word, candidates[0])
        return candidates[0]
    return word


def _replace_phrases(tokens: list[str], table: dict[tuple[str, ...], tuple[str, ...]]) -> list[str]:
    longest = max(map(len, table), default=1)
    out, i = [], 0
    while i < len(tokens):
        for size in range(min(longest, len(tokens) - i), 0, -1):
            replacement = table.get(tuple(tokens[i:i + size]))
            if replacement is not None:
                out.extend(replacement)
                i += size
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _age_numbers(tokens: list[str], vocab: Vocabulary) -> list[str]:
    """Rewrite ages in years ("look 40", "a 70 year old", "in her 50s") as one token "age:<years>"."""
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        years = None
        if re.fullmatch(r"\d{2}s", tok):
            years = int(tok[:-1]) + 5
        else:
            value = int(tok) if tok.isdigit() else (vocab.numbers.get(tok) if tok not in vocab.not_ages else None)
            if value is not None and value >= 10 and nxt in vocab.numbers and vocab.numbers[nxt] < 10:
                value, i = value + vocab.numbers[nxt], i + 1   # "forty five"
                nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            after = tokens[i + 2] if i + 2 < len(tokens) else ""
            relative = (out and out[-1] in vocab.age_change_before) or after in vocab.relative_years
            if value is not None and nxt in vocab.age_after and relative:
                i += 2
                continue   # "add 20 years", "5 years younger": a change, not an age
            if value is not None and (nxt in vocab.age_after or (out and out[-1] in vocab.age_before)):
                years = value
            if years is not None and nxt in vocab.age_after:
                i += 1
                while i + 1 < len(tokens) and tokens[i + 1] in vocab.age_after | {"old"}:
                    i += 1
        out.append(f"age:{years}" if years is not None else tok)
        i += 1
    return out


def normalise(text: str, vocab: Vocabulary | None = None) -> list[str]:
    """Lower-case tokens with contractions expanded, typos fixed and canonical phrases applied."""
    vocab = vocab or load_vocabulary()
    text = re.sub(r"[-_/]", " ", text.lower().replace("\u2019", "'").replace("\u2018", "'"))
    tokens = []
    for tok in _TOKEN.findall(text):
        tokens.extend(_expand(tok, vocab.contractions) if "'" in tok else [tok])
    tokens = [_correct(t, vocab) for t in tokens]
    return _age_numbers(_replace_phrases(tokens, vocab.canonical), vocab)


# --------------------------------------------------------------------------- clauses


@dataclass
class Clause:
    words: list[str]
    joined: bool = False        # follows a conjunction ("and", "or"): may inherit the previous verb
    question: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.words) + (" ?" if self.question else "")


def split_clauses(tokens: list[str], vocab: Vocabulary) -> list[Clause]:
    clauses, current, joined = [], [], False
    for tok in tokens + ["."]:
        if tok in PUNCTUATION or tok in vocab.conjunctions:
            if current:
                clauses.append(Clause(current, joined, tok == "?"))
            elif tok == "?" and clauses:
                clauses[-1].question = True
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


def scan(words: list[str], vocab: Vocabulary) -> list[Span]:
    """Longest-first phrase matching over the clause's words, articles and possessives dropped."""
    words = [w for w in words if w not in vocab.skipped]
    longest = max(map(len, vocab.lexicon))
    spans, i = [], 0
    while i < len(words):
        if words[i].startswith("age:"):
            years = int(words[i][4:])
            degree = next((d for lo, hi, d in vocab.age_years if lo <= years <= hi), MAX_DEGREE)
            spans.append(Span((words[i],), (Role("degree", vocab.years_attribute, degree),)))
            i += 1
            continue
        for size in range(min(longest, len(words) - i), 0, -1):
            roles = vocab.lexicon.get(tuple(words[i:i + size]))
            if roles:
                spans.append(Span(tuple(words[i:i + size]), roles))
                i += size
                break
        else:
            spans.append(Span((words[i],), ()))
            i += 1
    return spans


# --------------------------------------------------------------------------- reading one clause


@dataclass
class Cue:
    """One request about an attribute, before it is bound to one.

    ``options`` maps each attribute the cue can apply to onto its value: a degree (DEGREE), a
    signed change (CHANGE, WEAK), a sign relative to the last edit (RELATIVE) or 0 (REMOVE, ADD).
    ``scope``: "self" names its attribute(s); "named" needs one named; "verb" applies to every
    attribute named in the clause (or a pronoun's); "followup" acts on the attribute in focus.
    """

    level: int
    options: dict[str, int]
    scope: str
    word: str = ""
    amount: int = 0      # intensity for RELATIVE and ADD cues (0: none given)
    clause: int = 0      # which clause of the message it came from


@dataclass
class Reading:
    names: list[str] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    things: list[str] = field(default_factory=list)
    pronoun: bool = False
    blocked: bool = False          # negated ("don't add glasses") or "keep the beard"
    moderate: bool = False         # "..., but not too much"
    verb: str | None = None        # "add" | "remove" | "reduce" | "blocked": inherited by "... and the beard"
    bare: bool = False             # only attribute names ("the beard", "glasses please")


def _options(roles: list[Role], value=None) -> tuple[dict[str, int], str]:
    options = {r.attribute: (r.value if value is None else value(r)) for r in roles}
    return options, ("named" if all(r.named for r in roles) else "self")


def _names(spans: list[Span]) -> list[str]:
    """Attributes the clause names: by a name, or by a phrase that implies one ("older", "rimless")."""
    names = []
    for s in spans:
        for role in s.roles:
            implied = role.kind in ("degree", "cmp") or (role.kind == "polar" and s.used)
            if role.attribute and (role.kind == "name" or (implied and not role.named)) and role.attribute not in names:
                names.append(role.attribute)
    return names


def _neighbour_names(spans: list[Span], i: int, step: int) -> list[Role]:
    j = i + step
    while 0 <= j < len(spans) and spans[j].has("intensity", "some"):
        j += step
    return spans[j].get("name") if 0 <= j < len(spans) else []


def _comparisons(spans: list[Span], amount: int) -> list[Cue]:
    """ "more obvious", "less old", "more beard" (CHANGE); "too long", "not big enough" (WEAK)."""
    cues = []
    for i, s in enumerate(spans):
        roles = s.get("polar") or s.get("name")
        if not roles:
            continue
        prev = spans[i - 1] if i else None
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        negated = [x for x in spans[max(0, i - 2):i] if x.has("negation")]
        if prev and prev.has("more", "less"):
            level, sign, used = CHANGE, (1 if prev.has("more") else -1), [prev]
        elif roles[0].kind == "polar" and prev and prev.has("too"):
            level, sign, used = WEAK, -1, [prev]
        elif nxt and nxt.has("enough") and negated:
            level, sign, used = WEAK, 1, [nxt, *negated]
        else:
            continue
        options, scope = _options(roles, lambda role: (role.value if role.kind == "polar" else 1) * sign * amount)
        cues.append(Cue(level, options, scope, s.text))
        for x in [s, *used]:
            x.used = True
    return cues


def _anchored(spans: list[Span], step: int) -> list[Cue]:
    """ "slightly older than middle age": a degree phrase moved by a comparative."""
    cues = []
    for i in range(len(spans) - 2):
        cmp, than, anchor = spans[i:i + 3]
        if cmp.has("cmp") and than.has("than"):
            for role in cmp.get("cmp"):
                base = [d for d in anchor.get("degree") if d.attribute == role.attribute]
                if base:
                    degree = min(max(base[0].value + role.value * step, 0), MAX_DEGREE)
                    cues.append(Cue(DEGREE, {role.attribute: degree}, "self", anchor.text))
                    cmp.used = than.used = anchor.used = True
    return cues


def _negated(spans: list[Span]) -> bool:
    """ "don't add glasses", "never make her older", "I don't want the beard to change": nothing asked."""
    blocking = ("action", "add", "remove", "reduce", "increase", "decrease", "cmp", "degree")
    if spans and spans[-1].has("action") and not spans[-1].has("remove") and any(s.has("remove") for s in spans[:-1]):
        return True   # a refusal ending in a verb: "... the beard to change"
    return any(s.has("negation") and not s.used and any(x.has(*blocking) for x in spans[i + 1:i + 3])
               for i, s in enumerate(spans))


def _verbs(spans: list[Span], vocab: Vocabulary, r: Reading, intensity: int | None) -> list[Cue]:
    """Cues from verbs and follow-up words: "remove", "trim", "increase", "add", "too much", "again"."""
    every = dict.fromkeys(vocab.add_degree, 0)
    amount = intensity or vocab.amounts["plain"]
    step = intensity or vocab.amounts["followup"]
    cues = []
    for s in (s for s in spans if not s.used):
        if s.has("too much") and r.names:   # "the smile is too much"
            cues.append(Cue(WEAK, dict.fromkeys(every, -amount), "verb", s.text))
        elif s.has("too much", "followup"):   # "too much, go back a little", "keep going"
            sign = s.get("followup")[0].value if s.has("followup") else -1
            cues.append(Cue(RELATIVE, dict.fromkeys(every, sign), "followup", s.text, step))
        elif s.has("remove") and (intensity is None or intensity >= vocab.amounts["full_remove"]):
            cues.append(Cue(REMOVE, dict(every), "verb", s.text))
            r.verb = "remove"
        elif s.has("remove", "reduce"):   # "remove a bit of the beard", "trim the beard"
            cues.append(Cue(CHANGE, dict.fromkeys(every, -(intensity or vocab.amounts["partial"])), "verb", s.text))
            r.verb = "reduce"
        elif s.has("increase", "decrease"):
            cues.append(Cue(CHANGE, dict.fromkeys(every, amount if s.has("increase") else -amount), "verb", s.text))
        elif s.has("add"):
            cues.append(Cue(ADD, dict(every), "verb", s.text, intensity or 0))
            r.verb = r.verb or "add"
    return cues


def read_clause(clause: Clause, vocab: Vocabulary) -> Reading:
    """The cues in one clause, with what it names, refers to and asks to keep."""
    spans = scan(clause.words, vocab)
    r = Reading()
    every = dict.fromkeys(vocab.add_degree, 0)

    # 1. things; "change the poker face to a smile": drop the old state; intensity; "keep"
    things = list(dict.fromkeys(role.thing for s in spans for role in s.get("oos")))
    r.things = [t for t in things if t not in vocab.generic_things] or things   # "hair blonde": hair colour
    for i, s in enumerate(spans):
        to = next((j for j in range(i + 1, len(spans)) if spans[j].has("change_to")), None)
        if s.has("change_from") and to is not None:
            spans = spans[:i + 1] + spans[to:]
            break
    intensity = next((role.value for s in spans for role in s.get("intensity")), None)
    amount = intensity or vocab.amounts["plain"]
    r.moderate = any(s.has("moderate") for s in spans)
    r.pronoun = any(s.has("pronoun") for s in spans)
    keep = any(s.has("keep") for s in spans)

    # 2. comparisons and anchored degrees; then a negated or "keep" clause asks for nothing
    r.cues = _comparisons(spans, amount) + _anchored(spans, intensity or 1)
    r.names = _names(spans)
    if keep or _negated(spans):
        r.cues, r.blocked, r.verb = [], True, "blocked"
        return r

    # 3. what follows "no", "without", "remove", "don't" is what goes, even "sunglasses" or "laughing"
    for i, s in enumerate(spans[:-1]):
        if s.has("remove") and spans[i + 1].has("degree"):
            spans[i + 1].used = True
        elif s.has("negation") and not s.used and spans[i + 1].has("name"):   # "don't smile"
            r.cues.append(Cue(REMOVE, dict(every), "verb", s.text))
            s.used = spans[i + 1].used = True

    # 4. degree phrases ("to 4" included) and comparatives
    nominal = []   # degree phrases that are also names: in "make the sunglasses lighter" only names
    for i, s in enumerate(spans):
        if s.used:
            continue
        if s.words[0].isdigit() and i and spans[i - 1].has("degree_number"):
            if int(s.words[0]) <= MAX_DEGREE:
                r.cues.append(Cue(DEGREE, dict.fromkeys(every, int(s.words[0])), "named", s.text))
        elif s.get("degree"):
            options, scope = _options(s.get("degree"))
            (nominal if s.has("name") else r.cues).append(Cue(DEGREE, options, scope, s.text))
            s.used = True   # "shave" is then no longer a verb
        elif s.get("cmp"):
            options, scope = _options(s.get("cmp"), lambda role: role.value * amount)
            r.cues.append(Cue(CHANGE, options, scope, s.text))
            s.used = True

    # 5. "smile more", "less bangs"; a lone "more"/"less" is a follow-up
    unclear = False
    for i, s in enumerate(spans):
        if s.used or not s.has("more", "less"):
            continue
        sign = 1 if s.has("more") else -1
        names = _neighbour_names(spans, i, 1) or _neighbour_names(spans, i, -1)
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        if names:
            r.cues.append(Cue(CHANGE, {n.attribute: sign * amount for n in names}, "self", s.text))
        elif nxt is not None and not nxt.roles and nxt.words[0] not in vocab.fillers:
            unclear = True   # "more natural": a comparison this vocabulary cannot read
        else:
            r.cues.append(Cue(RELATIVE, dict.fromkeys(every, sign), "followup", s.text,
                              intensity or vocab.amounts["followup"]))
    if not any(c.level in (CHANGE, WEAK) for c in r.cues):
        r.cues.extend(nominal)

    # 6. verbs; "make her smile" adds only when nothing else in the clause wants the verb
    r.cues += _verbs(spans, vocab, r, intensity)
    if not r.cues and not unclear and any(s.has("make") for s in spans):
        r.cues.append(Cue(ADD, dict(every), "verb", "make", intensity or 0))
        r.verb = "add"

    # 7. nothing but names: "the beard", "glasses please"; with an intensity, a step: "smile a bit"
    plain = all(s.has("name") or s.words[0] in vocab.fillers for s in spans if not s.has("intensity"))
    if r.names and not r.cues and plain and intensity is not None:
        r.cues.append(Cue(ADD, dict(every), "verb", "add", intensity))
        r.verb = "add"
    r.bare = bool(r.names) and not r.cues and all(s.has("name") or s.words[0] in vocab.fillers for s in spans)
    return r



# --------------------------------------------------------------------------- commands and answers

_COMMAND_ORDER = ("reset", "undo", "redo", "new_face", "describe")


def _number(words: list[str], vocab: Vocabulary, limit: int) -> int | None:
    for w in words:
        value = int(w) if w.isdigit() else vocab.numbers.get(w)
        if value is not None and value <= limit:
            return value
    return None


def _command(clause: Clause, vocab: Vocabulary) -> Intent | None:
    for kind in _COMMAND_ORDER:
        if any(p.search(clause.text) for p in vocab.commands[kind]):
            if kind in ("undo", "redo"):
                return Intent(kind, steps=_number(clause.words, vocab, 20) or 1)
            if kind == "new_face":
                return Intent(kind, seed=next((int(w) for w in clause.words if w.isdigit()), None))
            return Intent(kind)
    return None


def _has(vocab: Vocabulary, word: str, *kinds: str) -> bool:
    return any(r.kind in kinds for r in vocab.lexicon.get((word,), ()))


def _covered(words: list[str], phrases: frozenset[tuple[str, ...]]) -> bool:
    """Whether ``words`` is nothing but a run of these phrases ("yeah, go ahead")."""
    if not words:
        return False
    i = 0
    while i < len(words):
        size = next((n for n in range(len(words) - i, 0, -1) if tuple(words[i:i + n]) in phrases), 0)
        if not size:
            return False
        i += size
    return True


def _check(context: DialogContext, vocab: Vocabulary) -> None:
    known = set(vocab.add_degree)
    if context.focus is not None and context.focus not in known:
        raise ValueError(f"context focus {context.focus!r} is not an attribute ({', '.join(sorted(known))})")
    unknown = set(context.degrees or {}) - known
    if unknown:
        raise ValueError(f"context degrees name unknown attributes {sorted(unknown)}")
    if context.suggestion is not None and context.suggestion.get("name") not in TOOL_KINDS:
        raise ValueError(f"pending suggestion names an unknown tool: {context.suggestion!r}")


def _suggested(suggestion: dict) -> Intent:
    kind = TOOL_KINDS[suggestion["name"]]
    args = suggestion.get("args") or {}
    return Intent(kind, attribute=args.get("attribute"), target=args.get("target"), change=args.get("change"),
                  steps=args.get("steps"), seed=args.get("seed"))


# --------------------------------------------------------------------------- binding and merging


def _bind(cue: Cue, reading: Reading, earlier: list[str], focus: str | None) -> list[str]:
    """The attributes a cue acts on: named here, named itself, by a pronoun or earlier, or in focus."""
    here = [a for a in reading.names if a in cue.options]
    if cue.scope == "verb":
        if here:
            return here
        if reading.pronoun:   # "let's remove it"; an "add" never reaches back to the focus
            back = earlier[:1] or ([focus] if focus and cue.level != ADD else [])
            return [a for a in back if a in cue.options]
        return []
    if here:
        return here[:1]
    if cue.scope == "self":
        return list(cue.options)[:1]
    if reading.things:   # "make the background darker": not about the focus
        return []
    back = [a for a in [*earlier, focus] if a and a in cue.options]
    return back[:1]


def _resolve(attribute: str, cues: list[Cue], context: DialogContext, vocab: Vocabulary,
             moderate: bool) -> Intent | None:
    """Merge one attribute's cues: degree phrase > remove > comparatives > follow-ups > add > complaints."""
    level = min(c.level for c in cues)
    chosen = [c for c in cues if c.level == level]
    values = [c.options[attribute] for c in chosen]
    if level == DEGREE:   # the last phrase refines or corrects the earlier ones
        return Intent("edit", attribute, target=values[-1])
    if level == REMOVE:
        return Intent("edit", attribute, target=0)
    if level == ADD:   # "add glasses": a typical degree from none; "smile a little": a small step
        current = (context.degrees or {}).get(attribute)
        default = vocab.add_degree.get(attribute)
        amount = max(c.amount for c in chosen)
        if amount or current or default is None:
            return Intent("edit", attribute, change=amount or 1)
        return Intent("edit", attribute, target=default)
    if level == CHANGE:   # one change per clause; clauses add up: "thicker frame and darker colour"
        per_clause: dict[int, tuple[str, int]] = {}
        for cue, value in zip(chosen, values):
            if abs(value) > abs(per_clause.get(cue.clause, ("", 0))[1]):
                per_clause[cue.clause] = (cue.word, value)
        change = sum(dict(per_clause.values()).values())
    elif level == RELATIVE:
        direction = 1
        if attribute == context.focus and context.last_change:
            direction = 1 if context.last_change > 0 else -1
        strongest = max(chosen, key=lambda c: c.amount)
        change = strongest.options[attribute] * direction * strongest.amount
    else:
        change = values[-1]
    if moderate:
        change = max(min(change, vocab.amounts["moderate_cap"]), -vocab.amounts["moderate_cap"])
    change = max(min(change, MAX_DEGREE), -MAX_DEGREE)
    return Intent("edit", attribute, change=change) if change else None


def parse(text: str, context: DialogContext = DialogContext()) -> list[Intent]:
    """Read one user message, in the dialog's context, as a list of intents (never empty)."""
    vocab = load_vocabulary()
    _check(context, vocab)
    # 1. normalise and split
    clauses = split_clauses(normalise(text, vocab), vocab)
    if not clauses:
        return [Intent("unknown")]
    slots: list[Intent | str] = []   # intents, or an attribute name standing for its merged edit

    for before, clause in zip(clauses, clauses[1:]):   # "too old and serious": too serious as well
        if clause.joined and len(before.words) >= 2 and _has(vocab, before.words[-2], "too", "more", "less") \
                and _has(vocab, clause.words[0], "polar"):
            clause.words.insert(0, before.words[-2])

    # 2. a leading "yes" / "no" answers the pending suggestion
    first = [w for w in clauses[0].words if w not in vocab.skipped]
    if _covered(first, vocab.answers["yes"]):
        clauses = clauses[1:]
        if context.suggestion:
            slots.append(_suggested(context.suggestion))
    elif _covered(first, vocab.answers["no"]):
        clauses = clauses[1:]
        slots.append(Intent("decline"))
    elif _covered(first, vocab.answers["content"]):
        clauses = clauses[1:]
        slots.append(Intent("content"))

    # 3. read each clause: a command, or cues bound to attributes
    cues: dict[str, list[Cue]] = defaultdict(list)
    earlier: list[str] = []          # attributes named so far, most recent first
    previous: Reading | None = None
    moderate = False
    for index, clause in enumerate(clauses):
        command = _command(clause, vocab)
        if command and command.kind == "new_face" and slots and slots[-1] == Intent("new_face"):
            slots.pop()   # "a new face, seed 7"
        if command:
            slots.append(command)
            if command.kind != "new_face":
                continue
        reading = read_clause(clause, vocab)
        moderate |= reading.moderate
        if reading.bare:   # "... and the beard": the previous verb; alone, "glasses please" adds
            verb = previous.verb if (clause.joined and previous and previous.verb) else "add"
            reading.verb = verb
            reading.blocked = verb == "blocked"
            level = {"add": ADD, "remove": REMOVE, "reduce": CHANGE}.get(verb)
            value = -vocab.amounts["partial"] if verb == "reduce" else 0
            if level is not None:
                reading.cues.append(Cue(level, dict.fromkeys(reading.names, value), "verb", verb))
        if not reading.blocked:
            slots.extend(Intent("out_of_scope", thing=t) for t in reading.things)
            for cue in reading.cues:
                cue.clause = index
                for attribute in _bind(cue, reading, earlier, context.focus):
                    if attribute not in cues:
                        slots.append(attribute)
                    cues[attribute].append(cue)
        earlier = [*reversed(reading.names), *[a for a in earlier if a not in reading.names]]
        previous = reading

    # 4. one edit per attribute
    intents: list[Intent] = []
    for slot in slots:
        intent = _resolve(slot, cues[slot], context, vocab, moderate) if isinstance(slot, str) else slot
        if intent is not None and intent not in intents:
            intents.append(intent)
    logger.debug("parsed %r as %s", text, intents)
    return intents or [Intent("unknown")]


def intents_to_calls(intents: list[Intent]) -> list[dict]:
    """Tool calls for the intents that call a tool; arguments with no value are left out."""
    calls = []
    for intent in intents:
        if intent.kind == "edit":
            args = {"attribute": intent.attribute, "target": intent.target, "change": intent.change}
            name = "edit_attribute"
        elif intent.kind in ("undo", "redo"):
            args, name = {"steps": intent.steps}, intent.kind
        elif intent.kind == "new_face":
            args, name = {"seed": intent.seed}, intent.kind
        elif intent.kind in ("reset", "describe"):
            args, name = {}, intent.kind
        else:
            continue
        calls.append({"name": name, "args": {k: v for k, v in args.items() if v is not None}})
    return calls
