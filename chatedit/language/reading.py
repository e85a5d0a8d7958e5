"""Reading one clause: the cues it holds (degree phrases, comparatives, verbs, follow-ups)."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatedit.attributes import MAX_DEGREE

from .descriptions import described_degree
from .text import Clause, Span, scan
from .vocabulary import TINT, Role, Vocabulary

# Cue levels, strongest first: a degree phrase beats a described look ("a fringe that ends at the
# eyebrows"), which beats "remove", which beats a comparative, ...
DEGREE, LOOK, REMOVE, CHANGE, RELATIVE, ADD, WEAK = range(7)
DEGREE_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}   # "set the smile to three"
THAN_REACH = 4   # words between "than" and "now": "than she does right now"

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
    detail: bool = False  # a degree phrase alone after another clause's ("..., retired"): it yields to that one
    echo: bool = False   # "the same again", "do the same": on another attribute, the last edit's change
    restore: bool = False   # "put the beard back": the degree it had before, when there was one
    lens: int = 0           # "tint them" (1), "remove the tint" (-1): a degree that depends on the frame
    far: bool = False       # a superlative ("the darkest sunglasses"): wins over the degree it qualifies
    vivid: bool = False     # a famous face or an age in years ("like Santa", "an 80-year-old"): wins over degree words
    now: bool = False       # a comparison with the face as it is ("happier than she does now"): wins over degrees
    mood: bool = False      # a mood word ("delighted"): a smile said by its look ("teeth and all") wins over it
    likened: bool = False   # from a clause that opens with "like" ("..., like old philosopher"): an illustration
    stated: bool = False    # its clause says how much ("older by one step"): a plain one beside it only repeats it


@dataclass
class Reading:
    names: list[str] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    things: list[str] = field(default_factory=list)
    pronoun: bool = False
    blocked: bool = False          # negated ("don't add glasses") or "keep the beard"
    moderate: bool = False         # "..., but not too much"
    limited: bool = False          # "..., nothing too heavy": an added thing of its typical degree, no more
    verb: str | None = None        # "add" | "remove" | "reduce" | "blocked": inherited by "... and the beard"
    bare: bool = False             # only attribute names ("the beard", "glasses please")
    intensity: int | None = None   # "a lot", "two steps": how much, when said
    replaced: bool = False         # "could they be swapped for ...": what the clauses before said is the old state


def _options(roles: list[Role], value=None) -> tuple[dict[str, int], str]:
    options = {r.attribute: (r.value if value is None else value(r)) for r in roles}
    return options, ("named" if all(r.named for r in roles) else "self")


def _names(spans: list[Span]) -> list[str]:
    """Attributes the clause names: by a name, or by a phrase that implies one ("older", "rimless")."""
    names = []
    for s in spans:
        for role in s.roles:
            implied = role.kind in ("degree", "cmp", "lens") or (role.kind == "polar" and s.used)
            if role.attribute and (role.kind == "name" or (implied and not role.named)) and role.attribute not in names:
                names.append(role.attribute)
    return names


def _neighbour_names(spans: list[Span], i: int, step: int) -> list[Role]:
    j = i + step
    while 0 <= j < len(spans) and spans[j].has("intensity", "some"):
        j += step
    return spans[j].get("name") if 0 <= j < len(spans) else []


def _far_end(role: Role, sign: int, vocab: Vocabulary, word: str = "") -> int:
    """The degree a superlative asks for: the top; or towards less, degree 0 when the word's pole is
    the scale's own end ("the most serious", "the youngest") and the faintest degree that still has
    the thing when it names a size ("the shortest stubble", "the smallest fringe": 1)."""
    if sign > 0:   # "the heaviest frames" reach thick frames, not sunglasses
        return vocab.phrasing.word_top.get(role.attribute, {}).get(word, MAX_DEGREE)
    return 1 if role.named and vocab.add_degree.get(role.attribute) is not None else 0


def _comparisons(spans: list[Span], amount: int, step: int, vocab: Vocabulary) -> list[Cue]:
    """ "more obvious", "less old", "more beard" (CHANGE); "too long", "not big enough" (WEAK), by
    ``amount``; a WEAK cue carries ``step``, the correction it is right after an edit that went too far."""
    cues = []
    for i, s in enumerate(spans):
        roles = s.get("polar") or s.get("name")
        prev = spans[i - 1] if i else None
        if prev and not prev.roles and prev.words[0] in vocab.fillers | vocab.phrasing.simile and i > 1 \
                and spans[i - 2].has("more", "less"):
            prev = spans[i - 2]   # "less of a sourpuss", "a bit less like a grandpa"
        elif prev and not prev.roles and i > 2:   # "less like she is at a funeral": a clause after "like"
            k = next((k for k in range(i - 1, max(0, i - 5), -1) if spans[k].roles
                      or spans[k].words[0] in vocab.phrasing.simile), 0)
            if k and not spans[k].roles and spans[k - 1].has("more", "less"):
                prev = spans[k - 1]
        after = spans[i + 1] if i + 1 < len(spans) else None
        if after and after.has("most") and s.get("name") and not s.used and not (
                i + 2 < len(spans) and spans[i + 2].has("polar", "degree", "look", "name")):
            sign = after.get("most")[0].value   # "make her smile the least she can": the verb's superlative
            options = {r.attribute: _far_end(r, sign, vocab) for r in s.get("name")}
            cues.append(Cue(DEGREE, options, "self", s.text, far=True))
            s.used = after.used = True
            continue
        said = {}   # "her biggest smile", "the shortest fringe": the superlative of the phrase's first word
        if prev and prev.has("most") and not s.get("polar") and (s.get("degree") or s.get("look")):
            said = {r.attribute: r.value for r in s.get("degree") + s.get("look")}
            first = vocab.lexicon.get(s.words[:1], ())
            roles = [r for r in first if r.kind == "polar" and r.attribute in said] or roles
        if not roles and prev and prev.has("more", "less"):   # "less stony-faced": away from that degree's end
            roles = [Role("polar", r.attribute, 1 if 2 * r.value > MAX_DEGREE else -1, r.named) for r in s.get("degree")]
        if not roles:
            continue
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        negated = [x for x in spans[max(0, i - 2):i] if x.has("negation")]
        if prev and prev.has("most"):   # "the longest bangs", "the most serious", "the least smile"
            signs = {r.attribute: (r.value if r.kind == "polar" else 1) * prev.get("most")[0].value for r in roles}
            options = {r.attribute: _far_end(r, signs[r.attribute], vocab, s.words[0]) for r in roles}
            for a, degree in said.items():   # "the thickest sunglasses": no less than thick sunglasses
                if a in options:
                    options[a] = max(options[a], degree) if signs[a] > 0 else min(options[a], degree)
            cues.append(Cue(DEGREE, options, "named" if all(r.named for r in roles) else "self", s.text, far=True))
            s.used = prev.used = True
            continue
        if prev and prev.has("more", "less"):
            level, sign, used = CHANGE, (1 if prev.has("more") else -1), [prev]
        elif roles[0].kind == "polar" and prev and (prev.has("too") or _mild_complaint(spans, i, vocab)):
            level, sign, used = WEAK, -1, [prev]   # "too long"; "the fringe feels a tad long"
        elif nxt and nxt.has("enough") and negated:
            level, sign, used = WEAK, 1, [nxt, *negated]
        else:
            continue
        options, scope = _options(roles, lambda role: (role.value if role.kind == "polar" else 1) * sign * amount)
        cues.append(Cue(level, options, scope, s.text, amount=step if level == WEAK else 0))
        for x in [s, *used]:
            x.used = True
    return cues


def _moderated(degree: int, before: Span, vocab: Vocabulary) -> int:
    """A mood's degree after an intensity word: a mild one ("slightly", "a bit") a step towards the calm end
    but still that mood, a strong one ("very", "extremely") a step further; the calm end itself stays."""
    strength = next((r.value for r in before.get("intensity")), None)
    if strength is None or degree == 0:
        return degree
    level = {w: r.value for w in ("slightly", "very") for r in vocab.lexicon[(w,)] if r.kind == "intensity"}
    if strength <= level["slightly"]:
        return max(1, degree - 1)
    return min(MAX_DEGREE, degree + 1) if level["very"] <= strength < MAX_DEGREE else degree


def _mild_complaint(spans: list[Span], i: int, vocab: Vocabulary) -> bool:
    """ "the fringe feels a tad long", "he looks a bit old": a mild intensity before an adjective, said of
    the face with a verb of being and no verb of change, is "a bit too"."""
    before = spans[:i - 1]
    mild = any(r.value < vocab.amounts["full_remove"] for r in spans[i - 1].get("intensity"))
    return mild and any(s.text in vocab.phrasing.observe[1] for s in before) \
        and not any(s.has("make", "add", "remove", "increase", "decrease") for s in spans)


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


def _swapped(spans: list[Span], vocab: Vocabulary) -> list[Span]:
    """ "change the poker face to a smile", "swap the thick frames for thin ones": the old state only
    says which attribute (its names are kept, as names), the new one is the request; "substitute thin
    frames for the thick ones" says the new one first."""
    def names(olds: list[Span]) -> list[Span]:
        kept = [Span(x.words, tuple(dict.fromkeys(Role("name", r.attribute) for r in x.roles if r.attribute and (
            r.kind == "name" or (r.kind in ("degree", "lens") and not r.named)))), True) for x in olds]
        return [x for x in kept if x.roles]

    for i, s in enumerate(spans):
        swap = s.text in vocab.phrasing.swap_verbs
        to = next((j for j in range(i + 1, len(spans)) if spans[j].has("change_to")
                   or (swap and spans[j].text in vocab.phrasing.swap_to)), None)
        if (s.has("change_from") or swap) and to is not None:
            if spans[to].text in vocab.phrasing.swap_reversed.get(s.text, ()):   # "substitute thin frames for thick"
                return spans[:i + 1] + spans[i + 1:to] + [spans[to]] + names(spans[to + 1:])
            return spans[:i + 1] + names(spans[i + 1:to]) + spans[to:]
    return spans


def _swapped_back(spans: list[Span], vocab: Vocabulary) -> bool:
    """ "could they be swapped for a lighter fringe", "replace them with thin ones": a swap whose old state is
    only a pronoun, so what the clauses before it described is the old state."""
    for i, s in enumerate(spans):
        if s.text not in vocab.phrasing.swap_verbs or s.has("name"):
            continue
        to = next((j for j in range(i + 1, len(spans)) if spans[j].text in vocab.phrasing.swap_to), None)
        old = spans[:to] if to is not None else []
        return bool(old) and any(x.has("pronoun") for x in old) and not any(
            x.has("name", "degree", "look") for x in old)
    return False


def _simile(spans: list[Span], vocab: Vocabulary) -> list[Span]:
    """ "a beard like an old sea captain's": after one attribute's name, a degree word of another that
    describes a noun the vocabulary does not know ("old sea captain") is about that noun, not the face,
    and the comparison is left out; so is a person said in one phrase ("like an old man")."""
    named: set[str] = set()
    for i, s in enumerate(spans):
        if s.text in vocab.phrasing.simile and (named or (i and spans[i - 1].words[-1] in vocab.phrasing.simile_verbs)):
            j = next((k for k in range(i + 1, len(spans)) if spans[k].roles), len(spans))   # the first word read
            k = j + 1   # then the noun it describes: no word for these attributes ("sea captain", "hipster")
            while k < len(spans) and spans[k].words[0] not in vocab.fillers and all(
                    r.named and r.attribute not in named for r in spans[k].roles):
                k += 1
            other = j < len(spans) and len(spans[j].words) == 1 and any(
                r.attribute not in named for r in spans[j].get("degree") + spans[j].get("polar"))
            if other and k == j + 1 and k < len(spans) and any(
                    r.attribute in named for r in spans[k].roles) and all(
                    r.attribute in named | {None} for r in spans[k].roles):
                # "a beard like an old hermit's": the noun is itself a look of the attribute named, kept;
                # the degree word before it describes that person only
                return spans[:i] + spans[k:]
            if other and k > j + 1:
                return spans[:i] + spans[k:]
            # "a beard like an old man's", "bangs like a little girl", "glasses like a young student's": a
            # person after another attribute's name shows that attribute's look, not the face's age
            end = j
            while end < len(spans) and spans[end].roles and all(
                    r.attribute not in named and r.kind in ("degree", "polar", "vivid", "look") for r in spans[end].roles):
                end += 1
            return spans[:i] + spans[end:] if end > j else spans
        named |= {r.attribute for r in s.get("name")}
    return spans


def _enough_that(spans: list[Span], cues: list[Cue], vocab: Vocabulary) -> list[Cue]:
    """ "smiling wide enough that you can see her teeth", "bangs so long they cover her eyes": the look the
    clause describes after it says the degree, not the word "so" or "enough" measures."""
    before, after = vocab.phrasing.measured
    measured = {spans[i - 1].text for i, s in enumerate(spans) if i and s.text in after} \
        | {spans[i + 1].text for i, s in enumerate(spans[:-1]) if s.text in before}
    if not measured or not any(c.level in (DEGREE, LOOK) and c.word not in measured for c in cues):
        return cues
    return [c for c in cues if not (c.level == DEGREE and c.word in measured)]


def _than_now(spans: list[Span], vocab: Vocabulary) -> bool:
    """Whether the clause compares with the face as it is: "than she does now", "than before"."""
    return any(s.has("than") and any(x.text in vocab.phrasing.than_now for x in spans[i + 1:i + 1 + THAN_REACH])
               for i, s in enumerate(spans))


def _refers(spans: list[Span], vocab: Vocabulary) -> bool:
    """Whether the clause refers back: a pronoun ("remove it"), a demonstrative as a verb's object
    ("tone that down", "dial that back"), or "some" with nothing after it that it is some of ("give her some")."""
    def before(i: int, *kinds: str) -> bool:
        return i + 1 < len(spans) and spans[i + 1].has(*kinds)

    verbs = ("action", "add", "remove", "reduce", "increase", "decrease")
    return any(s.has("pronoun")
               or (s.has("some") and not before(i, "name", "degree", "look", "intensity"))
               or (i > 0 and s.text in vocab.demonstratives and spans[i - 1].has(*verbs) and not before(i, "name"))
               for i, s in enumerate(spans))


def _limited(spans: list[Span]) -> bool:
    """ "nothing too heavy", "not too dark": a negated "too" before a word for more of the thing limits
    what is added to its typical degree."""
    return any(a.has("negation") and b.has("too") and any(r.value > 0 for r in c.get("polar"))
               for a, b, c in zip(spans, spans[1:], spans[2:]))


def _fits(span: Span, kind: str, names: list[str]) -> bool:
    """Whether a degree word can be about what the clause names: "trimmed" in "the fringe trimmed" is
    a beard's degree, so there it is only the verb."""
    return span.has("name") or not names or any(not r.named or r.attribute in names for r in span.get(kind))


def _indefinite(words: list[str], phrase: tuple[str, ...]) -> bool:
    """Whether the phrase comes right after "a"/"an" in the clause: a new state, not the thing there now."""
    n = len(phrase)
    return any(tuple(words[k:k + n]) == phrase and words[k - 1] in ("a", "an") for k in range(1, len(words)))


def _short_of(spans: list[Span], vocab: Vocabulary) -> list[Cue]:
    """ "a centimetre long, not yet covering the whole jaw", "bangs not quite down to the brows", "not yet a
    full beard": a negation, maybe hedged, before a described look (a degree word only with a hedge) says the
    degree just below it, as a detail that a degree said plainly wins over."""
    hedges = vocab.phrasing.short_of
    cues = []
    for i, s in enumerate(spans):
        if s.used or not s.has("negation"):
            continue
        j = i + 1
        while j < len(spans) and not spans[j].used and spans[j].words[0] in hedges and not spans[j].has("name"):
            j += 1
        if j >= len(spans) or spans[j].used:
            continue
        kind = "look" if spans[j].get("look") else "degree" if spans[j].get("degree") and j > i + 1 else None
        if kind is None or spans[j].has("remove", "add", "vivid", "mood"):
            continue
        options, scope = _options(spans[j].get(kind))
        if not options or min(options.values()) < 1:
            continue
        cues.append(Cue(LOOK, {a: d - 1 for a, d in options.items()}, scope, "short of " + spans[j].text, detail=True))
        k = j + 1   # "not the massive bushy kind": the words of the same look go with it
        while k < len(spans) and not spans[k].has("name") and spans[k].has("degree", "look", "polar"):
            k += 1
        for x in spans[i:k]:
            x.used = True
    return cues


def _negated(spans: list[Span]) -> bool:
    """ "don't add glasses", "never make her older", "I don't want the beard to change": nothing asked."""
    blocking = ("action", "add", "remove", "reduce", "increase", "decrease", "cmp", "degree", "lens")
    if spans and spans[-1].has("action") and not spans[-1].has("remove") and any(s.has("remove") for s in spans[:-1]):
        return True   # a refusal ending in a verb: "... the beard to change"
    unwanted = [i for i, s in enumerate(spans) if s.has("remove") and {"not", "never"} & set(s.words)]
    if any(x.has("remove") for i in unwanted[:1] for x in spans[i + 1:]):
        return True   # "I don't want the beard gone": not wanting it to go keeps it
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
            cues.append(Cue(RELATIVE, dict.fromkeys(every, sign), "followup", s.text, step, echo=sign > 0))
        elif s.has("remove") and (intensity is None or intensity >= vocab.amounts["full_remove"]):
            cues.append(Cue(REMOVE, dict(every), "verb", s.text))
            r.verb = "remove"
        elif s.has("remove", "reduce"):   # "remove a bit of the beard", "trim the beard"
            cues.append(Cue(CHANGE, dict.fromkeys(every, -(intensity or vocab.amounts["partial"])), "verb", s.text))
            r.verb = "reduce"
        elif s.has("increase", "decrease"):
            cues.append(Cue(CHANGE, dict.fromkeys(every, amount if s.has("increase") else -amount), "verb", s.text))
        elif s.has("add", "restore"):
            cues.append(Cue(ADD, dict(every), "verb", s.text, intensity or 0, restore=s.has("restore")))
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
    r.replaced = _swapped_back(spans, vocab)
    spans = _simile(_swapped(spans, vocab), vocab)
    intensity = r.intensity = next((role.value for s in spans for role in s.get("intensity")), None)
    amount = intensity or vocab.amounts["plain"]
    r.moderate = any(s.has("moderate") for s in spans)
    r.pronoun = _refers(spans, vocab)
    r.limited = _limited(spans)
    keep = any(s.has("keep") for s in spans)
    if keep and len(spans) > 2 and spans[0].has("keep") and spans[1].has("pronoun", "name") and all(
            x.has("degree") for x in spans[2:]):
        keep = False   # "a full beard, but keep it short": how it is to be, said as keeping it so

    # 2. comparisons and anchored degrees; then a negated or "keep" clause asks for nothing
    step = intensity or vocab.amounts["followup"]
    short_of = _short_of(spans, vocab)
    r.cues = _comparisons(spans, amount, step, vocab) + _anchored(spans, intensity or 1) + short_of
    r.names = _names(spans)
    if keep or _negated(spans):
        r.cues, r.blocked, r.verb = [], True, "blocked"
        return r

    # 3. what follows "no", "without", "remove", "don't" is what goes, even "sunglasses" or "laughing"
    for i, s in enumerate(spans[:-1]):
        if s.has("remove") and spans[i + 1].has("degree"):
            spans[i + 1].used = True
        elif s.has("name", "degree") and spans[i + 1].has("remove") and i + 2 == len(spans):
            s.used = True   # "could his stubble go away": what goes comes before the verb that ends the clause
        elif s.has("name", "degree", "pronoun") and spans[i + 1].text in vocab.phrasing.going and i + 2 == len(spans) \
                and not any(x.roles for x in spans[:i]):
            r.cues.append(Cue(REMOVE, dict(every), "verb", spans[i + 1].text))   # "could the specs go?", "stubble out"
            r.verb = "remove"
            s.used = spans[i + 1].used = True
        elif s.has("negation") and not s.used and spans[i + 1].has("name"):   # "don't smile"
            r.cues.append(Cue(REMOVE, dict(every), "verb", s.text))
            s.used = spans[i + 1].used = True

    # 4. degree phrases ("to 4" included), lenses and comparatives; "lose the tint": clear lenses, while
    #    "remove the tinted glasses" is left to the verb (the glasses go)
    tint = any(role.value == TINT for s in spans for role in s.get("lens"))
    removing = [s for s in spans if s.has("remove") and not s.used]
    if tint:
        for s in removing:
            s.used = True
    nominal = []   # degree phrases that are also names: in "make the sunglasses lighter" only names
    to = next((k for k, s in enumerate(spans) if s.has("change_to")), None)
    if to is not None and any(s.has("cmp", "increase", "decrease") for s in spans[:to]):
        goal = {r.attribute for s in spans[to + 1:] for r in s.get("degree")}
        for s in spans[:to]:   # "grow the child up to adolescence": the degree before "to" is the face now
            if s.get("degree") and all(r.attribute in goal for r in s.get("degree")):
                s.used = True
    for i, s in enumerate(spans):
        if s.used:
            continue
        value = int(s.words[0]) if s.words[0].isdigit() else None
        after = spans[i + 1].words[0] if i + 1 < len(spans) else ""
        if len(s.words) == 1 and after not in DEGREE_WORDS.keys() | {"hundred"} | vocab.age_after:
            value = DEGREE_WORDS.get(s.words[0], value)   # "to three", but not "at one hundred", "at five years"
        if value is not None and i and (spans[i - 1].has("degree_number") or (
                spans[i - 1].has("name") and i == len(spans) - 1)):   # "to 4", "level three"; "bangs 0" to end a clause
            if value <= MAX_DEGREE:
                r.cues.append(Cue(DEGREE, dict.fromkeys(every, value), "named", s.text))
        elif s.get("degree") and _fits(s, "degree", r.names):
            options, scope = _options(s.get("degree"))
            if s.has("mood") and i:   # "slightly amused" is a faint smile, "extremely cheerful" a big one
                options = {a: _moderated(d, spans[i - 1], vocab) for a, d in options.items()}
            # "sweep some strands forward" ("increase few strands"), "pump up the short beard": the degree
            # a verb of change acts on is what it changes, a name
            verb = i - 1 - (i > 1 and spans[i - 1].words[0] in vocab.demonstratives)   # "pump up that short beard"
            acted_on = i and spans[verb].has("increase", "decrease") and not s.has("vivid", "mood") \
                and not _indefinite(clause.words, s.words)   # "grow out a long beard": a goal
            # "trim the fringe back so that it covers half the forehead": after "to", the goal
            goal = any(spans[k].has("change_to") or (spans[k].words == ("so",) and spans[k + 1].has("pronoun"))
                       for k in range(max(0, i - 4), i))
            (nominal if (s.has("name") and not goal) or acted_on else r.cues).append(
                Cue(DEGREE, options, scope, s.text, vivid=s.has("vivid"), mood=s.has("mood")))
            s.used = True   # "shave" is then no longer a verb
        elif s.get("look") and _fits(s, "look", r.names):   # "a fringe that ends at the eyebrows"
            options, scope = _options(s.get("look"))
            before = i - 1 - (i > 1 and spans[i - 1].words == ("of",))
            if i and spans[before].has("more", "less") and not spans[before].used:
                # "so that more of the upper teeth show", "show less teeth": more (less) of the look, a change
                sign = 1 if spans[before].has("more") else -1
                r.cues.append(Cue(CHANGE, {a: sign * amount for a in options}, "self", s.text))
                s.used = spans[before].used = True
                continue
            # "let his scruff fill in a little more": a look that also names, beside a comparison, only names
            (nominal if s.has("name") and len(s.words) == 1 else r.cues).append(Cue(LOOK, options, scope, s.text))
            s.used = True
        elif s.get("extreme"):   # "set the glasses to the highest degree"
            r.cues.append(Cue(DEGREE, dict.fromkeys(every, s.get("extreme")[0].value), "named", s.text))
            s.used = True
        elif s.get("lens") and not (removing and not tint):
            role = s.get("lens")[0]
            sign = -TINT if removing else min(role.value, 1)
            # kept in order with the names that are degrees: "swap the sunglasses for clear ones"
            nominal.append(Cue(DEGREE, {role.attribute: 0}, "self", s.text, lens=sign))
            s.used = True
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
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        unread = nxt is not None and not nxt.roles and nxt.words[0] not in vocab.fillers \
            and nxt.words[0] not in vocab.known   # "the glasses more hip": not "more glasses"
        names = _neighbour_names(spans, i, 1) or ([] if unread else _neighbour_names(spans, i, -1))
        if names:
            r.cues.append(Cue(CHANGE, {n.attribute: sign * amount for n in names}, "self", s.text))
        elif nxt is not None and not nxt.roles and nxt.words[0] not in vocab.fillers:
            unclear = True   # "more natural": a comparison this vocabulary cannot read
        else:
            r.cues.append(Cue(RELATIVE, dict.fromkeys(every, sign), "followup", s.text,
                              intensity or vocab.amounts["followup"]))
    r.cues = _enough_that(spans, r.cues, vocab)
    if _than_now(spans, vocab):   # "loads happier than she does now": a change from the face as it is
        for cue in r.cues:
            cue.now = cue.level == CHANGE
    # "make the sunglasses lighter", "tone down the shades": a name that is also a degree only names
    comparing = any(c.level in (CHANGE, WEAK) for c in r.cues) or any(s.has("increase", "decrease") for s in spans)
    r.cues.extend(c for c in nominal if c.lens or not comparing)

    # 6. verbs; "make her smile" adds only when nothing else in the clause wants the verb
    r.cues += _verbs(spans, vocab, r, intensity)
    if any(c.level == WEAK and c.scope == "verb" for c in r.cues):   # "the laugh is too much": less than it
        r.cues = [c for c in r.cues if c.level not in (DEGREE, LOOK)]
    unclear |= any(not s.roles and s.words[0].endswith("er") and len(s.words[0]) > 4 and s.words[0] not in vocab.known
                   for s in spans)   # "make the glasses fancier": a comparison this vocabulary cannot read
    if unclear:   # "his beard needs to be more rugged": the verb only carries what could not be read
        r.cues = [c for c in r.cues if c.level != ADD]
    if not r.cues and not unclear and any(s.has("make") for s in spans):
        r.cues.append(Cue(ADD, dict(every), "verb", "make", intensity or 0))
        r.verb = "add"

    # 7. nothing but names: "the beard", "glasses please"; with an intensity, a step: "smile a bit";
    #    an intensity alone moves the focus on that much: "a little", "all the way"
    plain = all(s.has("name") or s.words[0] in vocab.fillers or s.words[0] in vocab.phrasing.phrasal
                for s in spans if not s.has("intensity"))   # "crank the age to the max": a verb of degree
    if r.names and not r.cues and plain and intensity is not None:
        r.cues.append(Cue(ADD, dict(every), "verb", "add", intensity))
        r.verb = "add"
    elif not r.names and not r.cues and not r.things and intensity is not None and all(
            s.has("intensity", "action", "pronoun") or s.words[0] in vocab.fillers for s in spans):
        r.cues.append(Cue(RELATIVE, dict.fromkeys(every, 1), "followup", "intensity", intensity))
    r.bare = bool(r.names) and not r.cues and all(s.has("name") or s.words[0] in vocab.fillers for s in spans)
    swapping = vocab.phrasing.swap_verbs | vocab.phrasing.swap_to   # "swap the frown for a smile"
    if r.names and not r.cues and not unclear and not r.things and all(
            s.has("name") or s.words[0] in vocab.fillers or s.text in swapping
            or (not s.roles and s.words[0] not in vocab.known)
            for s in spans):   # "a scraggly beard", "blunt bangs": a kind this vocabulary has no word for, added
        r.bare = True

    # 8. nothing read but one attribute's name: the words may describe one of its degrees ("glasses with
    #    slender frames" is "thin-framed glasses"), matched against attributes.yaml's descriptions
    if len(r.names) == 1 and all(c.level == ADD for c in r.cues) and not r.bare and not r.blocked and not r.things \
            and not unclear:
        degree = described_degree(clause.words, r.names[0], vocab)
        if degree is not None:
            r.cues.append(Cue(LOOK, {r.names[0]: degree}, "self", "described"))
    return r
