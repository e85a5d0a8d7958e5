"""The parser's vocabulary, read from ``prompts/language.yaml``: phrases and the roles they play."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from chatedit.attributes import MAX_DEGREE, attribute_names

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- vocabulary


TINT = 2   # the value of a lens role for the tint itself ("remove the tint"), not tinted glasses


@dataclass(frozen=True)
class Role:
    """One meaning of a phrase: ``kind`` plus, for attribute roles, the attribute and a value."""

    kind: str                  # "name" | "degree" | "look" (a described degree) | "cmp" | "polar" | "lens"
    #                            | "vivid" (a degree said by a famous face or an age in years)
    #                            | "intensity" | "followup" | "oos" | "most" | "extreme" | "mood" | grammar key
    attribute: str | None = None
    value: int = 0             # degree, sign or amount
    named: bool = False        # only meaningful when the attribute is named (e.g. "short", "longer")
    thing: str | None = None   # out-of-scope thing


@dataclass(frozen=True)
class Phrasing:
    """What ``prompts/lexicon.yaml`` adds beyond phrases: frames, phrasal verbs, word formation,
    superlatives, swaps, composition, questions about the face and what to ask when unsure."""

    frame_open: frozenset[tuple[str, ...]]     # "could you", "i would love to see": a wish, not a question
    complaint: dict   # "why doesn't she smile", "why is he so serious": lexicon.yaml's `frames.complaint`
    observe: tuple[frozenset[str], frozenset[str]]   # "she looks so glum": (subjects, verbs) of a remark
    observe_opinion: frozenset[str]            # "my mum reckons he looks ...": a verb of opinion before a remark
    observe_lacking: frozenset[tuple[str, ...]]   # "she has no glasses": what the face lacks, said of it
    observe_things: frozenset[str]             # "the heavy look is so dated": a look as the remark's subject
    observe_past: frozenset[tuple[str, ...]]   # "he shaved it last week": a report of the real person
    observe_unsaid: frozenset[str]             # "is more serious for work": a later clause with its "it" left out
    phrasal: dict[str, dict[str, tuple[str, ...]]]   # verb form -> particle -> the words it is read as
    suffixes: dict[str, tuple[str, ...]]       # word formation: kind -> suffixes, longest first
    privative: frozenset[tuple[str, ...]]      # "no rims" -> "rimless"
    without: tuple[frozenset[str], tuple[str, ...], str]   # "de-beard", "glasses-less": (prefixes, suffixes, read as)
    as_endings: frozenset[str]                 # "as old as it gets"
    faint_nouns: frozenset[str]                # "a whisper of a smile"
    every: tuple[frozenset[str], frozenset[str]]   # "every last whisker": (words before, words skipped)
    before_comparatives: dict[str, str]        # "way older": "much older"
    word_top: dict[str, dict[str, int]]        # "the heaviest frames": the top degree a superlative of a word reaches
    corrections: frozenset[str]                # "thin glasses, thick ones actually": a correction
    years_out_of: dict[str, int]               # "twenty years out of college": the age one leaves it at
    goal_openers: frozenset[str]               # "..., down to stubble": where the change ends
    description_words: dict[str, str]          # "slender" -> "thin": read as a word of attributes.yaml's looks
    faint_words: frozenset[tuple[str, ...]]    # "barely a smile"
    faint_none: tuple[frozenset[str], frozenset[str], str]   # "not even a hint of a smile": (negations, words skipped, read as)
    someone_else: tuple[frozenset[str], str]   # "my grandma wears thick glasses": (the words before, read as)
    kin: tuple[frozenset[str], frozenset[str]]  # "the dad of a teenager": (relational nouns, words joining them)
    simile: frozenset[str]                     # "a beard like an old sea captain's"
    simile_verbs: frozenset[str]               # "trimmed like a young sailor's": a comparison of the look
    swap_verbs: frozenset[str]
    swap_to: frozenset[str]
    swap_reversed: dict[str, frozenset[str]]   # "substitute the new for the old": verb -> the words after which the old comes
    swap_instead: frozenset[tuple[str, ...]]   # "instead of the old, the new"
    swap_out_in: tuple[frozenset[str], frozenset[str], tuple[str, str]]   # "X out, Y in": (out, in, read as)
    swap_instead_verb: str                     # the verb such a sentence is read with: "swap the old for the new"
    compose: dict[str, dict]                   # attribute -> {"base", "base_words", "with_degrees", "with_words"}
    inner_adverbs: frozenset[str]              # "forehead completely uncovered": adverbs a phrase may hold
    fringe_hair: tuple[frozenset[str], frozenset[str], str]   # (hair words, forehead words, the fringe)
    fringe_counted: tuple[frozenset[str], frozenset[str], tuple[str, ...]]   # "two strands": (words, counts, read as)
    durations: frozenset[str]                  # "three days unshaven": a number of these is no age
    fix_remark: dict                           # "she's so grumpy, fix that": the remark is a complaint
    consequence: dict                          # "(add stubble,) it would make him look older": a reason
    frame_words: frozenset[str]                # "chunkier frames": a change of the frame, within the lens kind
    duration_before: frozenset[str]            # "living there since forty years": years after these are a span
    going: frozenset[str]                      # "could the specs go?": ending a clause after a name, it goes
    than_now: frozenset[str]                   # "happier than she does now": a change from the face as it is
    measured: tuple[frozenset[str], frozenset[str]]   # "so long (they cover her eyes)", "wide enough (that ...)"
    hanging: tuple[frozenset[str], dict[str, str]]   # "bangs that come down lower": (verbs, lower/higher read as)
    years_after: frozenset[str]                # "wind the age back a decade": a number of years after these is a change
    years_unnumbered: dict[str, frozenset[str] | dict[str, str]]   # "take away some years": lexicon.yaml's entry
    negated_measure: tuple[frozenset[str], frozenset[str], str]   # "not ... this old": (negations, measures, read as)
    measured_hair: dict                        # "a beard 10 cm long": units, [(up to cm, read as)], words after
    short_of: frozenset[str]                   # "not yet covering the whole jaw": hedges between a negation and a look
    by: frozenset[str]                         # "decrement age by 2": a number after these is an amount
    steps: frozenset[str]                      # "two steps", "a couple of notches": an amount of degrees
    question_open: frozenset[tuple[str, ...]]
    question_verbs: frozenset[tuple[str, ...]]
    report_verbs: frozenset[str]              # "give me a rundown of the face": a verb and a noun of a report
    report_nouns: frozenset[str]
    report_not_to: frozenset[str]             # "give her a ...": to the face, so an edit
    question_measures: frozenset[str]         # "beard length?": a name and its measure, asked
    question_wishes: frozenset[str]
    enough_asked: frozenset[str]              # "is the beard long enough?": "enough" after these asks, no wish
    question_face: frozenset[tuple[str, ...]]
    question_lead: frozenset[str]
    question_hypothetical: tuple[frozenset[str], frozenset[str]]   # (markers, words of looking)
    question_at_age: dict[str, frozenset[str]]   # "before", "when", "verbs": an age said as a time
    question_compared: dict[str, frozenset[str]]   # "verbs", "than": "is he older than sixty?"
    question_causative: frozenset[str]
    question_objects: frozenset[str]
    question_alternative: frozenset[str]
    question_opinion: frozenset[tuple[str, ...]]   # "would you say she looks happy or sad?": no wish
    question_polite: frozenset[str]           # "glasses please?": asked for, not asked about
    question_possessive: frozenset[str]       # "her age?": a name said with one of these, asked
    question_either: dict[str, frozenset[str]]   # "glasses on or off?", "bangs or no?": "yes" and "no" choices
    clarify: dict[str, str]                    # what the built-in model says when it understood only part


@dataclass(frozen=True)
class Vocabulary:
    lexicon: dict[tuple[str, ...], tuple[Role, ...]]
    canonical: dict[tuple[str, ...], tuple[str, ...]]
    amounts: dict[str, int]
    answers: dict[str, frozenset[tuple[str, ...]]]
    answer_breaks: frozenset[str]   # after a leading "no", words that start a new request
    commands: dict[str, tuple[re.Pattern, ...]]
    numbers: dict[str, int]
    years_attribute: str
    age_years: tuple[tuple[int, int, int], ...]
    age_before: frozenset[str]
    age_after: frozenset[str]
    age_before_adult: frozenset[str]   # "at 17": an age from 10 on
    age_change_before: frozenset[str]
    age_object: tuple[frozenset[str], frozenset[str]]   # "make him 25": (verbs, persons) before an age
    age_to: frozenset[str]      # "age her to 50": words that make "to <number>" an age
    years_off: frozenset[str]   # "take 10 years off": verbs that make a number of years younger
    years_per_degree: float   # "10 years younger": years per degree of change (at least one degree)
    conjunctions: frozenset[str]
    contractions: dict          # {"whole": {...}, "suffixes": {...}, "is_after": [...]}
    skipped: frozenset[str]     # articles and possessives, ignored when matching phrases
    fillers: frozenset[str]     # words that leave "glasses please" a bare name
    demonstratives: frozenset[str]   # "tone that down": the object of a verb, as "it"
    not_ages: frozenset[str]
    relative_years: frozenset[str]   # "5 years younger": comparatives of the years attribute
    add_degree: dict[str, int | None]
    lenses: dict[str, tuple[int, int, int]]   # attribute -> (shift, tinted, clear): see ``lens_degree``
    generic_things: frozenset[str]   # out-of-scope things that yield to a more specific one
    keywords: frozenset[str]   # typo-correction targets
    known: frozenset[str]      # words never corrected
    common: frozenset[str]     # known words that are never read as made from another (``phrasing.formed``)
    phrasing: Phrasing


def _phrases(items) -> list[tuple[str, ...]]:
    bad = [p for p in items if not isinstance(p, str)]
    if bad:
        raise ValueError(f"language.yaml has non-text phrases {bad!r}; quote YAML words like 'no' and 'off'")
    return [tuple(p.split()) for p in items]


def replace_phrases(tokens: list[str], table: dict[tuple[str, ...], tuple[str, ...]]) -> list[str]:
    """``tokens`` with each phrase of ``table`` replaced by its words, longest first."""
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


def verb_forms(base: str) -> set[str]:
    """A regular verb's forms: "tone" -> tone, tones, toned, toning; "pin" -> pinned, pinning."""
    stem = base.removesuffix("e")
    double = len(base) <= 4 and re.fullmatch(r"[^aeiou]*[aeiou][bdgklmnprt]", base) is not None
    doubled = base + base[-1] if double else stem
    return {base, base + ("es" if base.endswith(("s", "sh", "ch", "x")) else "s"), doubled + "ed", doubled + "ing"}


def _words(node) -> list[str]:
    """Every phrase in a YAML tree of lists and mappings."""
    if isinstance(node, dict):
        return [w for v in node.values() for w in _words(v)]
    if isinstance(node, list):
        return [w for v in node for w in _words(v)]
    return [node] if isinstance(node, str) else []


def _read_prompt(name: str) -> dict:
    path = resources.files("chatedit.prompts").joinpath(name)
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def _phrasing(data: dict, derived: dict | None = None) -> Phrasing:
    frames, sup, faces = data["frames"], data["superlatives"], data["face_questions"]
    phrasal: dict[str, dict[str, tuple[str, ...]]] = {}
    for verb, particles in data["phrasal_verbs"].items():
        bad = [p for p in particles if not isinstance(p, str)]
        if bad:
            raise ValueError(f"lexicon.yaml phrasal verb {verb!r} has non-text particles {bad!r}; quote 'on' and 'off'")
        for form in verb_forms(verb):
            phrasal.setdefault(form, {}).update({p: tuple(str(w).split()) for p, w in particles.items()})
    return Phrasing(
        frame_open=frozenset(_phrases(frames["open"])),
        complaint={**frames["complaint"], "open": frozenset(_phrases(frames["complaint"]["open"])),
                   "negations": frozenset(frames["complaint"]["negations"]),
                   "measures": frozenset(frames["complaint"]["measures"])},
        observe=(frozenset(frames["observe"]["subjects"]), frozenset(frames["observe"]["verbs"])),
        observe_opinion=frozenset(frames["observe"].get("opinion", [])),
        observe_lacking=frozenset(_phrases(frames["observe"].get("lacking", []))),
        observe_things=frozenset(frames["observe"]["things"]),
        observe_past=frozenset(_phrases(frames["observe"]["past"])),
        observe_unsaid=frozenset(frames["observe"]["unsaid"]),
        phrasal=phrasal,
        suffixes={k: tuple(sorted(v, key=len, reverse=True)) for k, v in data["word_formation"].items()
                  if k not in ("privative", "without")},
        privative=frozenset(_phrases(data["word_formation"]["privative"])),
        without=(frozenset(data["word_formation"]["without"]["prefixes"]),
                 tuple(data["word_formation"]["without"]["suffixes"]), data["word_formation"]["without"]["read_as"]),
        as_endings=frozenset(w for p in _phrases(sup["as_endings"]) for w in p),
        faint_nouns=frozenset(sup["faint_nouns"]),
        every=(frozenset(sup.get("every", {}).get("before", [])), frozenset(sup.get("every", {}).get("skip", []))),
        before_comparatives=dict(data["before_comparatives"]),
        word_top={a: {w: int(d) for w, d in words.items()} for a, words in sup.get("word_top", {}).items()},
        corrections=frozenset(data["corrections"]),
        years_out_of={str(k): int(v) for k, v in data["years_out_of"].items()},
        goal_openers=frozenset(data["goal_openers"]),
        description_words={**((derived or {}).get("description_words") or {}), **data["description_words"]},
        faint_words=frozenset(_phrases(sup["faint_words"])),
        faint_none=(frozenset(sup["none"]["before"]), frozenset(sup["none"]["skip"]), sup["none"]["read_as"]),
        simile=frozenset(data["simile"]),
        simile_verbs=frozenset(data["simile_verbs"]),
        someone_else=(frozenset(data["someone_else"]["before"]), data["someone_else"]["read_as"]),
        kin=(frozenset(data["someone_else"].get("kin", [])), frozenset(data["someone_else"].get("kin_joins", []))),
        swap_verbs=frozenset(data["swaps"]["verbs"]),
        swap_to=frozenset(data["swaps"]["to"]),
        swap_reversed={v: frozenset(w) for v, w in data["swaps"]["reversed"].items()},
        swap_instead=frozenset(_phrases(data["swaps"]["instead"]["phrases"])),
        swap_instead_verb=data["swaps"]["instead"]["read_as"],
        swap_out_in=(frozenset(data["swaps"]["out_in"]["out"]), frozenset(data["swaps"]["out_in"]["in"]),
                     tuple(data["swaps"]["out_in"]["read_as"])),
        compose={a: {"base": {int(k): int(v) for k, v in c["base"].items()},
                     "base_words": frozenset(c.get("base_words", [])),
                     "with_degrees": frozenset(c.get("with_degrees", [])),
                     "with_words": frozenset(c.get("with_words", []))} for a, c in data["compose"].items()},
        inner_adverbs=frozenset(data["inner_adverbs"]),
        steps=frozenset(data["steps"]),
        by=frozenset(data["by"]),
        years_after=frozenset(data["years_after"]),
        years_unnumbered={k: dict(v) if isinstance(v, dict) else frozenset(v) for k, v in data["years_unnumbered"].items()},
        negated_measure=(frozenset(data["negated_measure"]["negations"]), frozenset(data["negated_measure"]["measures"]),
                         data["negated_measure"]["read_as"]),
        short_of=frozenset(data.get("short_of", ())),
        measured_hair={"units": {k: float(v) for k, v in data["measured_hair"]["units"].items()},
                       "read_as": [(float(n), str(p).split()) for n, p in data["measured_hair"]["read_as"]],
                       "after": frozenset(data["measured_hair"]["after"])},
        durations=frozenset(data["durations"]),
        duration_before=frozenset(data.get("duration_before", ())),
        fix_remark={"verbs": frozenset(tuple(p.split()) for p in frames["fix_remark"]["verbs"]),
                    "objects": frozenset(frames["fix_remark"]["objects"])},
        consequence={k: frozenset(v) for k, v in frames["consequence"].items()},
        frame_words=frozenset(data.get("frame_words", ())),
        going=frozenset(data["going"]),
        than_now=frozenset(data["than_now"]),
        measured=(frozenset(data["measured"]["before"]), frozenset(data["measured"]["after"])),
        hanging=(frozenset(data["hanging"]["verbs"]), dict(data["hanging"]["read_as"])),
        fringe_hair=(frozenset(data["fringe_hair"]["hair"]), frozenset(data["fringe_hair"]["near"]),
                     data["fringe_hair"]["read_as"]),
        fringe_counted=(frozenset(data["fringe_hair"]["counted"]), frozenset(map(str, data["fringe_hair"]["counts"])),
                        tuple(data["fringe_hair"]["counted_as"])),
        question_open=frozenset(_phrases(faces["open"])),
        question_verbs=frozenset(_phrases(faces["verbs"])),
        report_verbs=frozenset(faces["report"]["verbs"]),
        report_nouns=frozenset(faces["report"]["nouns"]),
        report_not_to=frozenset(faces["report"]["not_to"]),
        question_measures=frozenset(faces["measures"]),
        question_wishes=frozenset(faces["wishes"]),
        enough_asked=frozenset(faces["enough_asked"]),
        question_face=frozenset(_phrases(faces["face"])),
        question_lead=frozenset(faces["lead"]),
        question_hypothetical=(frozenset(faces["hypothetical"]), frozenset(faces["looks"])),
        question_at_age={k: frozenset(v) for k, v in faces["at_age"].items()},
        question_compared={k: frozenset(v) for k, v in faces["compared"].items()},
        question_causative=frozenset(faces["causative"]),
        question_objects=frozenset(faces["objects"]),
        question_alternative=frozenset(faces["alternative"]),
        question_either={k: frozenset(v) for k, v in faces["either"].items()},
        question_possessive=frozenset(faces["possessive"]),
        question_polite=frozenset(faces["polite"]),
        question_opinion=frozenset(_phrases(faces["opinion"])),
        clarify=dict(data["clarify"]),
    )


@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    data = _read_prompt("language.yaml")
    extra = _read_prompt("lexicon.yaml")
    derived = _read_prompt("lexicon_wordnet.yaml")
    lexicon: dict[tuple[str, ...], list[Role]] = defaultdict(list)
    skipped = frozenset(data["skipped"])

    def add(items, role: Role) -> None:
        for phrase in _phrases(items):
            phrase = tuple(w for w in phrase if w not in skipped) or phrase   # matched as a message is, articles dropped
            if role not in lexicon[phrase]:
                lexicon[phrase].append(role)

    # 1. attribute roles
    names = attribute_names()
    for name in data["attributes"]:
        if name not in names:
            raise ValueError(f"language.yaml describes attribute {name!r}, not in attributes.yaml ({', '.join(names)})")
    add_degree, lenses = {}, {}
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
        if "lenses" in entry:
            lenses[name] = tuple(int(entry["lenses"][k]) for k in ("shift", "tinted", "clear"))
            add(entry["lenses"]["tinted_words"], Role("lens", name, 1))
            add(entry["lenses"]["tint_words"], Role("lens", name, TINT))
            add(entry["lenses"]["clear_words"], Role("lens", name, -1))

    # 2. grammar, intensity, follow-ups, out-of-scope things
    for kind, items in data["grammar"].items():
        add(items, Role(kind))
    for word, amount in data["intensity"].items():
        add([word], Role("intensity", value=int(amount)))
    for key, sign in (("same", 1), ("opposite", -1)):
        add(data["followups"][key], Role("followup", value=sign))
    for thing, items in data["out_of_scope"].items():
        add(items, Role("oos", thing=thing))

    canonical = {p: tuple(str(target).split()) for source in (data, extra)
                 for target, items in (source.get("canonical") or {}).items() for p in _phrases(items)}
    # 3. lexicon.yaml, its phrases in canonical form as a message is ("covers his jaw" is read "cover jaw"):
    #    moods (a degree and the sign towards it), the ends of scales, described looks,
    #    parts of the face that name an attribute, superlative and extreme words; WordNet's moods
    def canon(items) -> list[str]:
        return [" ".join(replace_phrases(list(p), canonical)) for p in _phrases(items)]

    def add_canon(items, role: Role) -> None:
        add(canon(items), role)

    moods = extra["moods"]
    mood_degrees = {int(k): list(v) for k, v in moods.items() if isinstance(k, int)}
    for degree, words in (derived.get("moods") or {}).items():
        taken = {w for ws in mood_degrees.values() for w in ws}
        mood_degrees.setdefault(int(degree), []).extend(w for w in words if w not in taken)
    for degree, words in mood_degrees.items():
        add_canon(words, Role("degree", moods["attribute"], degree))
        add_canon(words, Role("polar", moods["attribute"], 1 if degree > 0 else -1))
        add_canon(words, Role("mood"))   # "slightly amused": an intensity before it moves its degree
    for name, degrees in extra["extremes"].items():
        for degree, items in degrees.items():
            add_canon(items, Role("degree", name, int(degree)))
            add_canon(items, Role("vivid"))   # a famous face wins over plain degree words ("like Santa, long")
    for name, items in extra["parts"].items():
        add_canon(items, Role("name", name))
    anchors = extra.get("description_anchors", {})
    for name, degrees in extra["descriptions"].items():
        named = degrees.get("named", True)
        for degree, items in ((k, v) for k, v in degrees.items() if k != "named"):
            add_canon(items, Role("look", name, int(degree), named=named))
            for phrase in _phrases(canon(items)):   # "short fringe", "big laugh" name the fringe and the smile as well
                if any(Role("name", name) in lexicon.get((w,), ()) or len(phrase) > 1 and any(
                        r.kind == "degree" and r.attribute == name and not r.named for r in lexicon.get((w,), ()))
                       for w in phrase) or (len(phrase) > 1 and set(phrase) & set(anchors.get(name, ()))):
                    add([" ".join(phrase)], Role("name", name))   # "forehead exposed": only bangs cover it
    for name, signs in extra.get("comparatives", {}).items():   # "youthened", "lifts her mood"
        for key, sign in (("up", 1), ("down", -1)):
            forms = {" ".join([f, *rest]) for verb, *rest in map(str.split, signs.get(key, [])) for f in verb_forms(verb)}
            add_canon(sorted(forms), Role("cmp", name, sign))
    sup = extra["superlatives"]
    add_canon(sup["most"], Role("most", value=1))
    add_canon(sup["least"], Role("most", value=-1))
    add_canon(sup["top"], Role("extreme", value=MAX_DEGREE))
    add_canon(sup["bottom"], Role("extreme", value=0))
    add_canon(sup.get("faintest", []), Role("extreme", value=1))

    phrasing = _phrasing(extra, derived)
    single = {w for phrase in lexicon for w in phrase} | {w for phrase in canonical for w in phrase}
    # a word only seen inside a longer phrase ("youngest" of "youngest possible") is not common by that alone
    inner = {w for phrase in [*lexicon, *canonical] if len(phrase) > 1 for w in phrase} \
        - {p[0] for p in [*lexicon, *canonical] if len(p) == 1}
    listed = set(extra.get("known_words", [])) | set(extra["moods"].get("wordnet_skip", [])) \
        | set(phrasing.description_words) | {w for p in _phrases(data["known_words"]) for w in p} | set(data["numbers"]) \
        | set(data["skipped"]) | set(phrasing.phrasal)
    known = single | listed | {w for v in data["answers"].values() for p in _phrases(v) for w in p}
    known |= phrasing.faint_nouns | phrasing.question_measures   # "a speck of stubble" is no typo of "specs"
    keyword_source = [p for p, roles in lexicon.items()
                      if any(r.attribute or r.kind in ("add", "remove", "increase", "decrease") for r in roles)]
    # mood words are read when typed, never guessed from a typo ("curious" is not "furious", "peckish"
    # not "puckish"); language.yaml's own words still are
    rare = {w for words in mood_degrees.values() for p in _phrases(words) for w in p}
    rare -= {w for p in _phrases(_words(data["attributes"])) for w in p}
    keywords = {w for p in keyword_source for w in p if len(w) >= 4 and w.isalpha()} - rare
    keywords |= {"undo", "redo", "reset", "describe", "another", "original"}
    return Vocabulary(
        lexicon={k: tuple(v) for k, v in lexicon.items()},
        canonical=canonical,
        amounts={k: int(v) for k, v in data["amounts"].items()},
        answers={k: frozenset(_phrases(v)) for k, v in data["answers"].items() if k != "breaks"},
        answer_breaks=frozenset(data["answers"].get("breaks", [])),
        commands={k: tuple(re.compile(p) for p in v) for k, v in data["commands"].items()},
        numbers={str(k): int(v) for k, v in data["numbers"].items()},
        years_attribute=data["years_attribute"],
        age_years=tuple(tuple(int(x) for x in row) for row in data["age_years"]),
        age_before=frozenset(data["age_number_before"]),
        age_after=frozenset(data["age_number_after"]),
        age_before_adult=frozenset(data["age_number_before_adult"]),
        age_change_before=frozenset(data["age_change_before"]),
        age_object=(frozenset(data["age_number_object"]["verbs"]), frozenset(data["age_number_object"]["objects"])),
        age_to=frozenset(w for p in _phrases(data["age_number_to"]) for w in p),
        years_per_degree=float(data["years_per_degree"]),
        years_off=frozenset(data["years_off"]),
        conjunctions=frozenset(data["grammar"]["conjunction"]),
        add_degree=add_degree,
        lenses=lenses,
        generic_things=frozenset(data["out_of_scope_generic"]),
        keywords=frozenset(keywords),
        contractions=data["contractions"],
        skipped=skipped,
        fillers=frozenset(data["fillers"]) | frozenset(extra.get("fillers", [])),
        demonstratives=frozenset(extra.get("demonstratives", [])),
        not_ages=frozenset(data["not_ages"]),
        relative_years=frozenset(p[0] for p, roles in lexicon.items() if len(p) == 1 and any(
            r.kind == "cmp" and r.attribute == data["years_attribute"] and not r.named for r in roles)),
        phrasing=phrasing,
        known=frozenset(known),
        common=frozenset(known - (inner - listed)),
    )


def lens_degree(vocab: Vocabulary, attribute: str, sign: int, current: int | None) -> int:
    """The degree for tinted (``sign`` > 0) or clear lenses (< 0), keeping the frame the glasses have.

    Tinted degrees are their clear frame's plus ``shift``: thin frames (2) tinted are thin-framed
    sunglasses (4). From no glasses (or rimless ones, which have no tinted kind) it is the
    ``tinted`` or ``clear`` degree; glasses that already are what was asked keep their degree.
    ``sign`` == -TINT takes a tint away: clear lenses in the same frame, and nothing else changes.
    """
    shift, tinted, clear = vocab.lenses[attribute]
    dark = current is not None and current >= tinted
    if sign == -TINT:
        return current - shift if dark else current or 0
    if sign > 0:
        return current if dark else tinted if current is None or current + shift < tinted else current + shift
    return current - shift if dark else current or clear
