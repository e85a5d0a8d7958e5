"""The built-in language understanding: one user message plus dialog context -> intents.

Deterministic and pure Python. Every word it knows lives in ``prompts/language.yaml``; this
module only knows roles (an attribute name, a degree phrase, a comparative, a verb that adds or
removes, a follow-up) and how they combine. ``parse`` turns text into :class:`Intent` objects;
``intents_to_calls`` turns those into the agent's tool calls.

How a message is read (docs/language.md):
1. normalise: lower-case, expand contractions, fix one-edit typos, apply canonical phrases, then
   the rewrites of ``phrasing.py`` (word formation, superlatives, phrasal verbs);
2. take out questions of the form "is he old or young?" ("should he be old or young?" only the
   person can settle: unclear); split into clauses at punctuation and conjunctions ("older and with
   a beard"); read a complaint as the order it implies ("why doesn't she smile?" -> "make she
   smile"); drop question and wish frames ("could you", "i would love to see"); note remarks on
   the face beside a request ("she looks so glum, ...", "my mum reckons he looks like a baby", "she
   has no glasses"), which go on after "and" ("she looks moody and unfriendly");
3. a leading "yes"/"no" answers the system's pending suggestion;
4. each clause is a command (undo, reset, ...), a question about the face, or is scanned for cues:
   degree phrases, described looks, superlatives, swaps, comparatives, add/remove verbs, intensity
   words, negation, follow-ups, out-of-scope things;
5. cues are bound to attributes (named in the clause, by a pronoun or an earlier clause, or the
   attribute in focus) and merged per attribute into one edit; an attribute named with nothing
   understood about it is ``unclear``, which the built-in model answers with its closest edit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from chatedit.attributes import MAX_DEGREE

from .questions import alternatives, compared_with_age, face_question, topic_question
from .reading import (
    ADD,
    CHANGE,
    DEGREE,
    LOOK,
    RELATIVE,
    REMOVE,
    Cue,
    Reading,
    read_clause,
)
from .text import VERB_KINDS, Clause, normalise, split_clauses
from .vocabulary import TINT, Vocabulary, lens_degree, load_vocabulary

logger = logging.getLogger(__name__)

TOOL_KINDS = {"edit_attribute": "edit", "undo": "undo", "redo": "redo", "reset": "reset",
              "new_face": "new_face", "describe": "describe"}


@dataclass(frozen=True)
class DialogContext:
    focus: str | None = None            # attribute in focus (the last one edited or discussed)
    last_change: int | None = None     # signed degrees of the last edit on the focus attribute
    suggestion: dict | None = None     # pending question: {"name": "edit_attribute", "args": {...}}
    degrees: dict[str, int] | None = None   # current degrees, when known
    earlier: dict[str, int] | None = None   # the degree each attribute had before it last changed


@dataclass(frozen=True)
class Intent:
    kind: str   # "edit" | "undo" | "redo" | "reset" | "new_face" | "describe" | "decline" | "content" | "out_of_scope"
    #             | "help" | "files" | "greeting" | "unclear" (an attribute named, nothing asked of it that
    #             was understood) | "unknown"
    attribute: str | None = None
    target: int | None = None
    change: int | None = None
    steps: int | None = None     # undo/redo count
    seed: int | None = None      # new_face
    thing: str | None = None     # out_of_scope noun, e.g. "background"


# --------------------------------------------------------------------------- commands and answers

# a new face first: "start again with someone else" asks for another person, not the original
_COMMAND_ORDER = ("new_face", "reset", "undo", "redo", "describe", "files", "help")


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


def _unframed(words: list[str], vocab: Vocabulary) -> list[str]:
    """The clause without a question or wish frame it opens with: "why not give him glasses" -> "give him glasses"."""
    frames, opinion = vocab.phrasing.frame_open, vocab.phrasing.question_opinion
    if any(tuple(words[k:k + n]) in opinion for k in (0, 1) for n in (2, 3, 4)):
        return words   # "what would you say her age is?": a question, not a wish
    size = next((n for n in range(min(len(words), 6), 0, -1) if tuple(words[:n]) in frames), 0)
    return words[size:]


def _uncomplained(words: list[str], vocab: Vocabulary) -> list[str]:
    """ "why doesn't she smile?", "how come he is never smiling?": a complaint that it is not so is an order
    that it be so: "make she does smile"; "why is he so serious?": one that it is so much, an order for
    less of it: "make less serious"."""
    complaint = vocab.phrasing.complaint
    size = next((n for n in (2, 1) if tuple(words[:n]) in complaint["open"]), 0)
    if not size:
        return words
    if set(words[size:]) & complaint["negations"]:
        return [complaint["read_as"], *(w for w in words[size:] if w not in complaint["negations"])]
    much = next((k for k in range(size, len(words) - 1)
                 if words[k] in complaint["measures"] and _has(vocab, words[k + 1], "polar")), None)
    if much is not None:
        return [complaint["read_as"], complaint["less"], *words[much + 1:]]
    return words


def _coordinated(clauses: list[Clause], vocab: Vocabulary) -> list[Clause]:
    """ "a thick, long beard", "the thinnest, most barely-there fringe": adjectives that need a name,
    either side of a comma, describe the same thing; the two clauses are one."""
    def adjective(word: str) -> bool:
        roles = vocab.lexicon.get((word,), ())
        return bool(roles) and all(r.named or r.kind in ("most", "intensity") for r in roles)

    out: list[Clause] = []
    for clause in clauses:
        first = next((w for w in clause.words if w not in vocab.skipped), "")
        # "a cropped but full beard", "short and dense stubble": joined by a conjunction, when the first
        # clause names nothing and the noun they both describe comes after the second
        tied = not clause.joined or (out and not any(_has(vocab, w, "name") for w in out[-1].words)
                                     and any(_has(vocab, w, "name") for w in clause.words))
        if out and tied and not out[-1].question and adjective(out[-1].words[-1]) and adjective(first):
            clause.words = out.pop().words + clause.words
        out.append(clause)
    return out


def _fixed_remarks(clauses: list[Clause], vocab: Vocabulary) -> list[Clause]:
    """ "She's so grumpy in this pic! Could you fix that?": a remark on how the face is, then a request to
    fix it, is a complaint: an order for less of what the remark says ("make less grumpy")."""
    fix = vocab.phrasing.fix_remark
    subjects, verbs = vocab.phrasing.observe
    out: list[Clause] = []
    skip = False
    for i, clause in enumerate(clauses):
        if skip:
            skip = False
            continue
        nxt = clauses[i + 1].words if i + 1 < len(clauses) else []
        asks = any(tuple(nxt[k:k + n]) in fix["verbs"] and set(nxt[k + n:k + n + 2]) & fix["objects"]
                   for k in range(min(len(nxt), 3)) for n in (1, 2, 3))
        if asks and _remark(clause, vocab):
            words = [w for w in clause.words if w not in vocab.skipped]
            at = next((k for k, w in enumerate(words) if w in verbs), None)
            if at is not None and at + 1 < len(words):
                rest = [w for w in words[at + 1:] if w not in vocab.phrasing.complaint["measures"]]
                clause.words = [vocab.phrasing.complaint["read_as"], vocab.phrasing.complaint["less"], *rest]
                skip = True
        out.append(clause)
    return out


def _remark(clause: Clause, vocab: Vocabulary) -> bool:
    """ "she looks so glum": a subject and a verb of being, saying how the face is, with no complaint word
    ("a bit old"); "my mum reckons he looks like a baby": an opinion of it. A framed clause ("what would
    he look like at 85") is a request."""
    subjects, verbs = vocab.phrasing.observe
    words = [w for w in clause.words if w not in vocab.skipped]
    while words and words[0] in vocab.phrasing.question_lead:   # "honestly, he looks miserable"
        words = words[1:]
    opinion = next((k for k, w in enumerate(words[:4]) if w in vocab.phrasing.observe_opinion), None)
    if opinion is not None and len(words) > opinion + 1 and words[opinion + 1] in subjects:
        words = words[opinion + 1:]   # "i think she looks grumpy", "my mum reckons he looks like a baby"
    look = next((k for k in range(1, min(len(words) - 1, 4)) if (words[k] in vocab.phrasing.observe_things
                 or _has(vocab, words[k], "name")) and words[k + 1] in verbs), None)
    if look is not None:   # "the heavy look is so dated", "the heavy fringe is hiding her face": said of it
        words = ["it", *words[look + 1:]]
    subject = words[0] in subjects or _has(vocab, words[0], "name") if words else False   # "her expression is flat"
    if not clause.framed and compared_with_age(words, vocab):
        return True   # "he is younger than 30": the face now, set against an age
    if words and words[0] in subjects and not clause.framed and any(
            tuple(words[k:k + len(p)]) == p for p in vocab.phrasing.observe_past for k in range(len(words))):
        return True   # "he shaved it in real life last week": what the real person did
    mild = any(w.value < vocab.amounts["full_remove"] and _has(vocab, x, "polar")
               for w0, x in zip(words, words[1:]) for w in vocab.lexicon.get((w0,), ()) if w.kind == "intensity")
    lacking = next((n for n in (3, 2) if tuple(words[1:1 + n]) in vocab.phrasing.observe_lacking), 0)
    rest = words[1 + lacking:] if lacking else words[2:]   # after the verb; "she has no glasses": what it lacks
    return len(words) > 2 and subject and not clause.framed and (lacking or words[1] in verbs) and not mild \
        and not any(_has(vocab, w, "too", "more", "less", "enough", "cmp", "add", "remove", "negation") for w in rest)


def _consequence(clause: Clause, vocab: Vocabulary) -> bool:
    """ "I feel like it'd stop him resembling a schoolboy", "that would make her look younger": what the
    edit asked beside it would do, a reason given for it."""
    c = vocab.phrasing.consequence
    words = [w for w in clause.words if w not in vocab.skipped]
    at = next((k for k, w in enumerate(words[:5]) if w in c["subjects"]), None)
    return not clause.framed and at is not None and len(words) > at + 2 and words[at + 1] in c["modals"] \
        and words[at + 2] not in c["wishes"] and all(w in vocab.phrasing.question_lead or w in
                                                     vocab.phrasing.observe_opinion or w in ("i", "we", "like") for w in words[:at])


def _adjectives(clause: Clause, vocab: Vocabulary) -> bool:
    """Whether a clause is nothing but words that say how a face is ("unfriendly", "a bit tired"): no
    name, no verb, no comparison."""
    return all(not _has(vocab, w, "name", "cmp", "more", "less", "too", *VERB_KINDS) for w in clause.words)


def _closest(clauses: list[Clause], vocab: Vocabulary) -> str | None:
    """The one attribute a message not understood at all is about, by a name two typos away ("bearrd")."""
    found = set()
    for word in (w for c in clauses for w in c.words if len(w) >= 5 and w.isalpha() and w not in vocab.known):
        for phrase, roles in vocab.lexicon.items():
            name = next((r.attribute for r in roles if r.kind == "name"), None)
            if name and len(phrase) == 1 and len(phrase[0]) >= 5 and _within_two(word, phrase[0]):
                found.add(name)
    return found.pop() if len(found) == 1 else None


def _within_two(a: str, b: str) -> bool:
    """Levenshtein distance of at most two (small words, so the plain table)."""
    if abs(len(a) - len(b)) > 2:
        return False
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1] <= 2


def _topic(question: Intent, topic: Reading, clause: int, slots: list, cues: dict[str, list[Cue]]) -> Intent:
    """A question after a clause of nothing but names ("her glasses, are they thick?"): the names are
    what it asks about, not an attribute to add."""
    for attribute in topic.names:
        cues[attribute] = [c for c in cues[attribute] if c.clause != clause]
        if not cues[attribute] and attribute in slots:
            slots.remove(attribute)
            del cues[attribute]
    if question.attribute is None and len(topic.names) == 1:
        return Intent("describe", attribute=topic.names[0])
    return question


def _restate_amount(reading: Reading, previous: Reading, vocab: Vocabulary, joined: bool = False) -> bool:
    """Whether a clause that only says how much ("a lot less", "maybe two steps") sets the amount of the
    change the clause before asked for ("younger, a lot more": more of it); a "less" only after a change down."""
    follow = reading.cues[0] if len(reading.cues) == 1 and not reading.names else None
    if joined and (follow is None or follow.word != "intensity"):
        return False   # "older, but only a touch": an amount alone may follow a conjunction
    if follow is not None and follow.level == CHANGE and follow.scope == "named" and reading.intensity is not None:
        return _restate_comparative(follow, previous)   # "grow the beard out, maybe two steps longer"
    if follow is None or follow.level != RELATIVE or reading.intensity is None:
        return False
    comparing = _has(vocab, follow.word, "more", "less")
    if follow.word != "intensity" and not comparing:
        return False
    sign = next(iter(follow.options.values()))
    changes = [c for c in previous.cues if c.level == CHANGE and c.options]
    if not changes or (sign < 0 and any(v > 0 for c in changes for v in c.options.values())):
        return False
    for cue in changes:
        cue.options = {a: (1 if v > 0 else -1) * follow.amount for a, v in cue.options.items()}
    return True


def _restate_comparative(follow: Cue, previous: Reading) -> bool:
    """Whether a comparative that needs a name and says how much ("maybe two steps longer") only sets the
    amount of the change the clause before asked for with none ("grow the beard out"), the same way."""
    changes = [c for c in previous.cues if c.level == CHANGE and c.options]
    if previous.intensity is not None or not changes:
        return False
    signs = {a: v for c in changes for a, v in c.options.items() if a in previous.names}
    said = {a: v for a, v in follow.options.items() if a in signs and v * signs[a] > 0}
    if not said:
        return False
    for cue in changes:
        cue.options = {a: said.get(a, v) for a, v in cue.options.items()}
    return True


def _check(context: DialogContext, vocab: Vocabulary) -> None:
    known = set(vocab.add_degree)
    if context.focus is not None and context.focus not in known:
        raise ValueError(f"context focus {context.focus!r} is not an attribute ({', '.join(sorted(known))})")
    for name, values in (("degrees", context.degrees), ("earlier degrees", context.earlier)):
        unknown = set(values or {}) - known
        if unknown:
            raise ValueError(f"context {name} name unknown attributes {sorted(unknown)}")
    if context.suggestion is not None and context.suggestion.get("name") not in TOOL_KINDS:
        raise ValueError(f"pending suggestion names an unknown tool: {context.suggestion!r}")


def _suggested(suggestion: dict) -> Intent:
    kind = TOOL_KINDS[suggestion["name"]]
    args = suggestion.get("args") or {}
    return Intent(kind, attribute=args.get("attribute"), target=args.get("target"), change=args.get("change"),
                  steps=args.get("steps"), seed=args.get("seed"))


# --------------------------------------------------------------------------- binding and merging


def _bind(cue: Cue, reading: Reading, earlier: list[str], focus: str | None, focus_absent: bool = False) -> list[str]:
    """The attributes a cue acts on: named here, named itself, by a pronoun or earlier, or in focus."""
    here = [a for a in reading.names if a in cue.options]
    if cue.scope == "verb":
        if here:
            return here
        if reading.pronoun:   # "let's remove it"; an "add" reaches back to the focus only when it has none
            back = earlier[:1] or ([focus] if focus and (cue.level != ADD or cue.restore or focus_absent) else [])
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


def _composed(attribute: str, cues: list[Cue], vocab: Vocabulary) -> int | None:
    """A degree said with a modifier of another kind: "dark shades with thick frames" (a frame and a
    tint: thick-framed sunglasses), "a long beard, thick all over" (a length and fullness: full long)."""
    rule = vocab.phrasing.compose.get(attribute)
    said = [c for c in cues if c.level in (DEGREE, LOOK)]
    if rule is None or len(said) + sum(1 for c in cues if c.lens > 0) < 2:
        return None
    bases = [c for c in said if c.options[attribute] in rule["base"] and not c.lens
             and (not rule["base_words"] or c.word in rule["base_words"])]
    for base in reversed(bases):
        if any(c.lens < 0 for c in cues) and not any(c.lens > 0 for c in cues):
            return base.options[attribute]   # "plain glasses with thick frames": the frame, clear
        if any(c is not base and (c.lens > 0 or c.word in rule["with_words"]
                                  or (c.options.get(attribute) in rule["with_degrees"] and not c.lens)) for c in cues):
            return rule["base"][base.options[attribute]]
    return None


def _illustrates(slot, cues: dict[str, list[Cue]]) -> bool:
    """ "make him laugh very hard, like Santa Claus", "no glasses at all, bare as a newborn's": a famous face
    or figure in a clause of its own, beside a request about something else, only illustrates that request;
    the attribute it alone implies is not edited."""
    if not isinstance(slot, str) or not cues[slot] or not all(c.vivid or c.likened for c in cues[slot]):
        return False   # "..., like old philosopher from Greece": a clause opening with "like" illustrates too
    here = {c.clause for c in cues[slot]}
    return len(here) == 1 and any(a != slot and any(not (c.vivid or c.likened) and c.clause not in here for c in cs)
                                  for a, cs in cues.items())


def _within_lenses(vocab: Vocabulary, attribute: str, now: int, wanted: int) -> int:
    """``wanted`` kept among the degrees with the lenses ``now`` has (clear 1..3, tinted 4..5): a change of
    the frame alone ("chunkier frames" over thin glasses) never turns glasses into sunglasses."""
    _, tinted, _ = vocab.lenses[attribute]
    low, high = (tinted, MAX_DEGREE) if now >= tinted else (1, tinted - 1)
    return min(high, max(low, wanted))


def _resolve(attribute: str, cues: list[Cue], context: DialogContext, vocab: Vocabulary,
             moderate: bool, limited: bool = False) -> Intent | None:
    """Merge one attribute's cues: degree phrase > described look > remove > comparatives > follow-ups
    > add > complaints."""
    composed = _composed(attribute, cues, vocab)
    if composed is not None:
        return Intent("edit", attribute, target=composed)
    cues = [c for c in cues if c.now] or cues   # "delighted, like loads happier than now": the change from now
    looks = [c for c in cues if c.level in (DEGREE, LOOK) and not c.mood]
    if looks and len(looks) < len(cues) and any(c.mood for c in cues):
        cues = [c for c in cues if not c.mood]   # "beaming, teeth and all": the look said, not the mood's degree
    if any(c.level == CHANGE and c.stated for c in cues) and any(c.mood for c in cues) and not looks:
        cues = [c for c in cues if not c.mood]   # "ramp up his smile loads, I want him thrilled": how much, said
    said = [c for c in cues if c.level in (DEGREE, LOOK)]
    if said and any(c.level == ADD and c.amount >= MAX_DEGREE for c in cues) \
            and all(c.options[attribute] >= MAX_DEGREE - 1 for c in said):
        return Intent("edit", attribute, target=MAX_DEGREE)   # "max out the beard, long and thick": the most
    level = min(c.level for c in cues)
    chosen = [c for c in cues if c.level == level]
    values = [c.options[attribute] for c in chosen]
    if level in (DEGREE, LOOK):   # the last phrase refines or corrects the earlier ones; a superlative wins
        far = [c for c in chosen if c.far]
        if far:   # "the least smile she can, while still smiling": the faintest that still is one
            still = far[-1].options[attribute] == 0 and any(c.level == ADD and c.clause != far[-1].clause for c in cues)
            return Intent("edit", attribute, target=1 if still else far[-1].options[attribute])
        vivid = [c for c in chosen if c.vivid]
        if vivid:   # "a beard like Santa's, long and bushy", "an eighty-year-old pensioner": the vivid one
            chosen = vivid[-1:]
            values = [c.options[attribute] for c in chosen]
        if any(not c.detail for c in chosen):   # "like a grandfather with white hair, retired": a detail
            chosen = [c for c in chosen if not c.detail]
            values = [c.options[attribute] for c in chosen]
        if chosen[-1].lens:   # "remove the tint": the same frame, with clear lenses
            current = (context.degrees or {}).get(attribute)
            degree = lens_degree(vocab, attribute, chosen[-1].lens, current)
            # "frames thicker and bolder, but still with clear lenses": the frame moves a step within the kind
            frame = sum(c.options[attribute] for c in cues if c.level == CHANGE and not c.lens)
            if frame and chosen[-1].lens != -TINT:
                degree = _within_lenses(vocab, attribute, degree, degree + (1 if frame > 0 else -1))
            return Intent("edit", attribute, target=degree)
        return Intent("edit", attribute, target=values[-1])
    if level == REMOVE:
        return Intent("edit", attribute, target=0)
    if level == ADD:   # "add glasses": a typical degree from none; "smile a little": a small step
        current = (context.degrees or {}).get(attribute)
        before = (context.earlier or {}).get(attribute)
        if any(c.restore for c in chosen) and before is not None and before > (current or 0):
            return Intent("edit", attribute, target=before)   # "put the beard back": as it was
        default = vocab.add_degree.get(attribute)
        amount = max(c.amount for c in chosen)
        if limited and default is not None and (current or 0) > default:
            return Intent("edit", attribute, target=default)   # "put glasses on her, nothing too heavy": plain ones
        if amount or current or default is None:
            return Intent("edit", attribute, change=amount or 1)
        return Intent("edit", attribute, target=default)
    if level == CHANGE:   # one change per clause; clauses add up: "thicker frame and darker colour"
        per_clause: dict[int, tuple[str, int]] = {}
        stated = {1 if v > 0 else -1 for c, v in zip(chosen, values) if c.stated and v}
        if len(stated) == 1:   # "older by one step, age him up": the plain one says it again, it adds nothing
            kept = [(c, v) for c, v in zip(chosen, values) if c.stated or (1 if v > 0 else -1) not in stated]
            chosen, values = [c for c, _ in kept], [v for _, v in kept]
        for cue, value in zip(chosen, values):
            if abs(value) > abs(per_clause.get(cue.clause, ("", 0))[1]):
                per_clause[cue.clause] = (cue.word, value)
        change = sum(dict(per_clause.values()).values())
        current = (context.degrees or {}).get(attribute)
        if attribute in vocab.lenses and current and all(c.word in vocab.phrasing.frame_words for c in chosen):
            change = _within_lenses(vocab, attribute, current, current + change) - current   # "chunkier frames"
            if not change:
                return None
    elif level == RELATIVE:
        direction = 1
        if attribute == context.focus and context.last_change:
            direction = 1 if context.last_change > 0 else -1
        strongest = max(chosen, key=lambda c: c.amount)
        change = strongest.options[attribute] * direction * strongest.amount
        if attribute != context.focus and context.focus and context.last_change and all(c.echo for c in chosen):
            change = context.last_change   # "now the same for the beard": the change the last edit made
    else:
        change = values[-1]
        if chosen[-1].amount and attribute == context.focus and (context.last_change or 0) * change < 0:
            change = chosen[-1].amount * (1 if change > 0 else -1)   # "too old" right after aging: a step back
    if moderate:
        change = max(min(change, vocab.amounts["moderate_cap"]), -vocab.amounts["moderate_cap"])
    change = max(min(change, MAX_DEGREE), -MAX_DEGREE)
    return Intent("edit", attribute, change=change) if change else None


def parse(text: str, context: DialogContext = DialogContext()) -> list[Intent]:
    """Read one user message, in the dialog's context, as a list of intents (never empty)."""
    vocab = load_vocabulary()
    _check(context, vocab)
    # 1. normalise and split; "is he old or young?" asks about the age
    asked, undecided, tokens = alternatives(normalise(text, vocab), vocab)
    slots: list[Intent | str] = [Intent("describe", attribute=a) for a in asked]
    slots += [Intent("unclear", attribute=a) for a in undecided]   # "should the beard be long or short?"
    clauses = split_clauses(tokens, vocab)
    if not clauses:
        return slots or [Intent("unknown")]

    for clause in clauses:   # "could you ...", "i would love to see ...": the request inside the frame
        words = _unframed(_uncomplained(clause.words, vocab), vocab)
        clause.words, clause.framed = words, len(words) < len(clause.words)
    clauses = _coordinated([c for c in clauses if c.words], vocab)
    if not clauses:
        return slots or [Intent("unknown")]
    clauses = _fixed_remarks(clauses, vocab)
    remarks = set()
    for i, clause in enumerate(clauses):   # "she looks moody and unfriendly": the remark goes on after "and"
        unsaid = i and not clause.asked and clause.words[0] in vocab.phrasing.observe_unsaid   # "is more serious for work"
        if unsaid or _remark(clause, vocab) or _consequence(clause, vocab) or (
                i - 1 in remarks and clause.joined and _adjectives(clause, vocab)):
            remarks.add(i)
    if remarks and all(i in remarks or not (r.cues or r.names or r.blocked)
                       for i, r in enumerate(read_clause(c, vocab) for c in clauses)):
        remarks = set()   # "she looks sad" (", is that possible?"): with nothing else asked, a remark is the request

    for before, clause in zip(clauses, clauses[1:]):   # "too old and serious": too serious as well
        if clause.joined and len(before.words) >= 2 and _has(vocab, before.words[-2], "too", "more", "less") \
                and _has(vocab, clause.words[0], "polar"):
            clause.words.insert(0, before.words[-2])

    # 2. a hello is answered; a leading "yes" / "no" answers the pending suggestion
    counted = len(clauses)
    first = [w for w in clauses[0].words if w not in vocab.skipped]
    greeting = next((n for n in range(len(first), 0, -1) if tuple(first[:n]) in vocab.answers["greeting"]), 0)
    if greeting:
        slots.append(Intent("greeting"))
        clauses[0].words = clauses[0].words[clauses[0].words.index(first[greeting - 1]) + 1:]
        clauses = [c for c in clauses if c.words]
        if not clauses:
            return slots
        first = [w for w in clauses[0].words if w not in vocab.skipped]
    if len(first) > 1 and (first[0],) in vocab.answers["no"] and first[1] in vocab.answer_breaks:
        # "no I wanted her older", "no wait, ...": an answer, then a request (not "no older")
        clauses[0].words = clauses[0].words[clauses[0].words.index(first[0]) + 1:]
        clauses.insert(0, Clause([first[0]]))
        first = first[:1]
    elif len(first) > 2 and (first[0],) in vocab.answers["no"] and first[1] == "not":   # "no, not those, ..."
        clauses[0].words = clauses[0].words[clauses[0].words.index(first[0]) + 1:]
        first = first[:1]
        clauses.insert(0, Clause(first))
    if _covered(first, vocab.answers["yes"]):
        clauses = clauses[1:]
        acknowledged = bool(clauses) and _covered(first, vocab.answers["acknowledge"])
        if context.suggestion and not acknowledged:
            slots.append(_suggested(context.suggestion))
    elif _covered(first, vocab.answers["no"]):
        clauses = clauses[1:]
        slots.append(Intent("decline"))
    elif _covered(first, vocab.answers["content"]):
        clauses = clauses[1:]
        slots.append(Intent("content"))

    shift = counted - len(clauses)   # "that's great! now could she have bangs?": the remarks after an answer
    remarks = {i - shift for i in remarks if i >= shift}

    # 3. read each clause: a command, or cues bound to attributes
    cues: dict[str, list[Cue]] = defaultdict(list)
    earlier: list[str] = []          # attributes named so far, most recent first
    previous: Reading | None = None
    moderate = False
    limited = False                  # "..., nothing too heavy"
    undoing = False                  # the clause before undid named attributes
    described = None                 # the sentence of a question about the face, while its clauses go on
    now, before = context.degrees or {}, context.earlier or {}
    for index, clause in enumerate(clauses):
        command = _command(clause, vocab)
        reading = read_clause(clause, vocab)
        if command and command.kind in ("help", "files") and reading.names:
            command = None   # "what can you do about his beard": about the beard, not about the assistant
        elif command and command.kind == "describe" and len(reading.names) == 1:
            command = Intent("describe", attribute=reading.names[0])   # "does she have glasses?": that one
        elif command is None:
            question, about = face_question(clause, reading, vocab)   # "how's the beard looking?"
            rest = [c for c in clauses[index + 1:] if c.sentence == clause.sentence]
            if not question and topic_question(clause, reading, rest, vocab, len(clauses) == 1):
                question, about = True, reading.names[0]
            command = Intent("describe", attribute=about) if question else None
        if command and command.kind == "describe" and previous and previous.bare and not clause.joined:
            command = _topic(command, previous, index - 1, slots, cues)   # "his chin, is it covered by a beard?"
        if (command and command.kind == "undo" and command.steps == 1 and reading.names != [context.focus]) \
                or (undoing and clause.joined and not command and reading.bare):
            # "undo the glasses (and the smile)" when the last edit was something else: each back to what
            # it was before its own last change; one that never changed stays as it is, and says so
            undone = [Intent("edit", a, target=before.get(a, now.get(a))) for a in reading.names
                      if a in before or a in now]
            if undone:
                slots.extend(undone)
                undoing = True
                continue
        undoing = False
        if described == clause.sentence and not command and not reading.cues and (reading.bare or reading.things):
            continue   # "tell me what you see, glasses, hair, expression": what the question covers, no edit
        if command and command.kind == "new_face" and slots and slots[-1] == Intent("new_face"):
            slots.pop()   # "a new face, seed 7"
        if command:
            slots.append(command)
            described = clause.sentence if command.kind == "describe" else None
            if command.attribute:   # "her glasses? remove them": what was asked about is what "them" is
                earlier = [command.attribute, *[a for a in earlier if a != command.attribute]]
            if command.kind != "new_face":
                continue
        if index in remarks:
            reading.cues = []
        elif reading.names and not reading.cues and not reading.bare and not reading.blocked and not reading.things:
            slots.append(Intent("unclear", attribute=reading.names[0]))   # "make the glasses fancier"
        moderate |= reading.moderate
        limited |= reading.limited
        if reading.replaced:   # "those bangs feel heavy, could they be swapped for ...": the old state
            for attribute in [a for a in reading.names or earlier[:1] if a in cues]:
                cues[attribute] = [c for c in cues[attribute] if c.clause >= index]
        if previous and _restate_amount(reading, previous, vocab, clause.joined):
            continue   # "less bangs, a lot less", "older, maybe two steps": how much, said again
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
            detail = index > 0 and not clause.joined and len(clause.words) <= 3 \
                and not set(clause.words) & vocab.phrasing.corrections and clause.words[0] not in vocab.phrasing.goal_openers
            for cue in reading.cues:
                cue.clause = index
                cue.stated = reading.intensity is not None
                cue.likened = clause.words[0] in ("like", "as")
                cue.detail = detail and cue.level in (DEGREE, LOOK)
                for attribute in _bind(cue, reading, earlier, context.focus, now.get(context.focus) == 0):
                    if attribute not in cues:
                        slots.append(attribute)
                    cues[attribute].append(cue)
        earlier = [*reversed(reading.names), *[a for a in earlier if a not in reading.names]]
        previous = reading

    slots = [s for s in slots if not _illustrates(s, cues)]

    # 4. one edit per attribute
    intents: list[Intent] = []
    for slot in slots:
        intent = _resolve(slot, cues[slot], context, vocab, moderate, limited) if isinstance(slot, str) else slot
        if intent is not None and intent not in intents:
            intents.append(intent)
    if any(i.kind == "describe" and i.attribute for i in intents):   # "quick check, how are her bangs?"
        intents = [i for i in intents if i != Intent("describe")]
    acted = {i.attribute for i in intents if i.kind in ("edit", "describe")}
    intents = [i for i in intents if i.kind != "unclear" or i.attribute not in acted]
    if not intents:
        guess = _closest(clauses, vocab)   # "make the bearrd nicer": about the beard, at least
        intents = [Intent("unclear", attribute=guess)] if guess else []
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
        elif intent.kind == "describe":
            args, name = {"attribute": intent.attribute}, intent.kind
        elif intent.kind == "reset":
            args, name = {}, intent.kind
        else:
            continue
        calls.append({"name": name, "args": {k: v for k, v in args.items() if v is not None}})
    return calls
