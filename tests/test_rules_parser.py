"""The built-in language understanding, on how people actually phrase requests.

None of these sentences is taken from the Talk-to-Edit benchmark (a test below checks that):
they are the generalisation check, written as a user of the chat page would type.
"""

import json

import pytest

from chatedit.bench_parse import DEFAULT_PATH
from chatedit.language import DialogContext, Intent, intents_to_calls, normalise, parse


def edit(attribute, target=None, change=None):
    args = {"attribute": attribute, "target": target, "change": change}
    return {"name": "edit_attribute", "args": {k: v for k, v in args.items() if v is not None}}


def calls(text, context=DialogContext()):
    return intents_to_calls(parse(text, context))


def kinds(text, context=DialogContext()):
    return [i.kind for i in parse(text, context)]


SMILED = DialogContext(focus="smiling", last_change=1)
MADE_YOUNGER = DialogContext(focus="age", last_change=-2)
GREW_BEARD = DialogContext(focus="beard", last_change=2, degrees={"beard": 3})
WORE_GLASSES = DialogContext(focus="eyeglasses", last_change=2, degrees={"eyeglasses": 2})
TOOK_GLASSES_OFF = DialogContext(focus="eyeglasses", last_change=-5, degrees={"eyeglasses": 0, "smiling": 1, "beard": 0},
                                 earlier={"eyeglasses": 5, "smiling": 3})
ASKED_GLASSES = DialogContext(focus="smiling", last_change=1,
                              suggestion={"name": "edit_attribute", "args": {"attribute": "eyeglasses", "target": 2}})

# (message, expected calls): my own requests, the generalisation check
REQUESTS = [
    # synonyms and target degrees
    ("Could you give her a gentle smile?", [edit("smiling", target=2)]),
    ("give him thick-framed sunglasses", [edit("eyeglasses", target=5)]),
    ("rimless glasses please", [edit("eyeglasses", target=1)]),
    ("put some specs on her", [edit("eyeglasses", target=2)]),
    ("I'd like to see him in shades", [edit("eyeglasses", target=4)]),
    ("swap the glasses for sunglasses", [edit("eyeglasses", target=4)]),
    ("change the glasses to rimless ones", [edit("eyeglasses", target=1)]),
    ("make him look 40", [edit("age", target=3)]),
    ("make him look like he's in his forties", [edit("age", target=3)]),
    ("she should be in her 50s", [edit("age", target=4)]),
    ("make her about 25", [edit("age", target=2)]),
    ("turn her into a child", [edit("age", target=0)]),
    ("can he look like a teenager?", [edit("age", target=1)]),
    ("I want him to look like a grandpa", [edit("age", target=5)]),
    ("no beard on him please", [edit("beard", target=0)]),
    ("clean-shaven please", [edit("beard", target=0)]),
    ("give him some stubble", [edit("beard", target=1)]),
    ("let him grow a long beard", [edit("beard", target=4)]),
    ("I'd love to see him with a big bushy beard", [edit("beard", target=4)]),
    ("wipe the smile off her face", [edit("smiling", target=0)]),
    ("stop smiling", [edit("smiling", target=0)]),
    ("make her look sad", [edit("smiling", target=0)]),
    ("she should be laughing out loud", [edit("smiling", target=5)]),
    ("big toothy grin", [edit("smiling", target=4)]),
    ("bangs covering the eyebrows", [edit("bangs", target=5)]),
    ("I want bangs that reach her eyebrows", [edit("bangs", target=4)]),
    ("short bangs", [edit("bangs", target=2)]),
    ("get rid of the fringe", [edit("bangs", target=0)]),
    # "add X" from none: a typical degree, not the faintest one
    ("add a pair of glasses", [edit("eyeglasses", target=2)]),
    ("add a moustache", [edit("beard", target=3)]),
    ("give her a fringe", [edit("bangs", target=3)]),
    ("make her smile", [edit("smiling", target=2)]),
    # definite and indefinite changes
    ("make her smile a little", [edit("smiling", change=1)]),
    ("a tiny bit older", [edit("age", change=1)]),
    ("much older please", [edit("age", change=3)]),
    ("make her look younger", [edit("age", change=-2)]),
    ("remove some beard", [edit("beard", change=-1)]),
    ("trim the beard a little", [edit("beard", change=-1)]),
    ("a little less smile", [edit("smiling", change=-1)]),
    ("make her a bit less serious", [edit("smiling", change=1)]),
    ("she looks too old", [edit("age", change=-2)]),
    ("he looks too young, add some years", [edit("age", change=2)]),
    ("tone down the smile", [edit("smiling", change=-2)]),
    ("thinner frames please", [edit("eyeglasses", change=-2)]),
    ("can the beard be a bit fuller?", [edit("beard", change=1)]),
    ("shorten the bangs a little", [edit("bangs", change=-1)]),
    ("make the fringe longer, but don't overdo it", [edit("bangs", change=2)]),
    ("make the fringe longer, down to the eyebrows", [edit("bangs", target=4)]),
    # several edits in one message
    ("older and with a beard", [edit("age", change=2), edit("beard", target=3)]),
    ("add glasses and make her smile", [edit("eyeglasses", target=2), edit("smiling", target=2)]),
    ("remove the glasses and the beard", [edit("eyeglasses", target=0), edit("beard", target=0)]),
    ("make him older, add glasses and remove the smile",
     [edit("age", change=2), edit("eyeglasses", target=2), edit("smiling", target=0)]),
    # negation
    ("don't add glasses, just smile", [edit("smiling", target=2)]),
    ("no more changes to the beard, but make him older", [edit("age", change=2)]),
    ("keep the smile as it is but add a beard", [edit("beard", target=3)]),
    ("leave the glasses alone and remove the beard", [edit("beard", target=0)]),
    ("I don't want any glasses", [edit("eyeglasses", target=0)]),
    ("don't smile", [edit("smiling", target=0)]),
    ("without sunglasses", [edit("eyeglasses", target=0)]),          # what goes, not a degree
    ("make the sunglasses lighter", [edit("eyeglasses", change=-2)]),  # the subject, not a degree
    ("I don't want rimless glasses, I want thick ones", [edit("eyeglasses", target=3)]),
    ("he's too old and serious", [edit("age", change=-2), edit("smiling", change=2)]),
    # a number of years is a number of degrees, about 15 years each, at least one
    ("make her look 5 years younger", [edit("age", change=-1)]),
    ("make him 30 years older", [edit("age", change=2)]),
    ("add 40 years", [edit("age", change=3)]),
    ("take 10 years off her", [edit("age", change=-1)]),
    ("make her look a few years younger", [edit("age", change=-1)]),
    ("take off 20 years", [edit("age", change=-1)]),
    ("make her look exactly 25", [edit("age", target=2)]),
    ("in his 30s", [edit("age", target=2)]),   # as "in his thirties"
    ("tiny bit more beard", [edit("beard", change=1)]),   # not a tiny beard
    ("set the smile to 4", [edit("smiling", target=4)]),
    # typos
    ("make her smle more", [edit("smiling", change=2)]),
    ("add some glases", [edit("eyeglasses", target=2)]),
    ("make him oldr", [edit("age", change=2)]),
    ("a bit more beerd", [edit("beard", change=1)]),
    ("sunglases please", [edit("eyeglasses", target=4)]),
    # commands
    ("undo", [{"name": "undo", "args": {"steps": 1}}]),
    ("undo the last two", [{"name": "undo", "args": {"steps": 2}}]),
    ("undo the last 3 changes", [{"name": "undo", "args": {"steps": 3}}]),
    ("go back two steps", [{"name": "undo", "args": {"steps": 2}}]),
    ("two steps back please", [{"name": "undo", "args": {"steps": 2}}]),
    ("revert the last two changes", [{"name": "undo", "args": {"steps": 2}}]),
    ("can you redo that", [{"name": "redo", "args": {"steps": 1}}]),
    ("start over", [{"name": "reset", "args": {}}]),
    ("back to the original please", [{"name": "reset", "args": {}}]),
    ("another face", [{"name": "new_face", "args": {}}]),
    ("show me a new person, seed 7", [{"name": "new_face", "args": {"seed": 7}}]),
    ("what do you see", [{"name": "describe", "args": {}}]),
    ("describe the face", [{"name": "describe", "args": {}}]),
    ("how old does she look?", [{"name": "describe", "args": {"attribute": "age"}}]),   # asked about one: that one
    ("is he smiling?", [{"name": "describe", "args": {"attribute": "smiling"}}]),
    ("what have you changed so far?", [{"name": "describe", "args": {}}]),
    ("list the edits", [{"name": "describe", "args": {}}]),
    ("what's his age now?", [{"name": "describe", "args": {"attribute": "age"}}]),
    ("could you start again with someone else", [{"name": "new_face", "args": {}}]),   # not a reset
    ("give him a grin from ear to ear", [edit("smiling", target=4)]),   # an idiom, not the ears
]


@pytest.mark.parametrize("text,expected", REQUESTS, ids=[t for t, _ in REQUESTS])
def test_request_becomes_the_expected_calls(text, expected):
    assert calls(text) == expected


# (message, context, expected calls): follow-ups and answers that need the dialog
FOLLOW_UPS = [
    ("a bit more", SMILED, [edit("smiling", change=1)]),
    ("more", MADE_YOUNGER, [edit("age", change=-1)]),                # more of the last change: younger
    ("a lot more", SMILED, [edit("smiling", change=3)]),
    ("keep going", GREW_BEARD, [edit("beard", change=1)]),
    ("even longer", GREW_BEARD, [edit("beard", change=2)]),
    ("less", SMILED, [edit("smiling", change=-1)]),
    ("too much, go back a little", SMILED, [edit("smiling", change=-1)]),
    ("that's too much", MADE_YOUNGER, [edit("age", change=1)]),
    ("make it shorter", GREW_BEARD, [edit("beard", change=-2)]),
    ("remove it", GREW_BEARD, [edit("beard", target=0)]),
    ("add a pair of glasses", DialogContext(degrees={"eyeglasses": 3}), [edit("eyeglasses", change=1)]),
    ("yes", ASKED_GLASSES, [edit("eyeglasses", target=2)]),
    ("yeah, go ahead", ASKED_GLASSES, [edit("eyeglasses", target=2)]),
    ("sure, and make her older", ASKED_GLASSES, [edit("eyeglasses", target=2), edit("age", change=2)]),
    ("no, add a beard instead", ASKED_GLASSES, [edit("beard", target=3)]),
    ("ok", ASKED_GLASSES, [edit("eyeglasses", target=2)]),
    ("ok and now undo everything", ASKED_GLASSES, [{"name": "reset", "args": {}}]),   # acknowledges, not a yes
    ("no not those, darker ones", WORE_GLASSES, [edit("eyeglasses", change=2)]),     # not "no glasses"
    ("hmm that looks weird, revert", SMILED, [{"name": "undo", "args": {"steps": 1}}]),
    # how much, said about the last edit
    ("that's a bit much", SMILED, [edit("smiling", change=-1)]),
    ("not that much", GREW_BEARD, [edit("beard", change=-1)]),
    ("halfway back", SMILED, [edit("smiling", change=-1)]),
    ("a little", SMILED, [edit("smiling", change=1)]),          # the answer to "shall I make it bigger?"
    ("all the way", SMILED, [edit("smiling", change=5)]),       # clipped to the scale's end by the editor
    ("as much as possible", MADE_YOUNGER, [edit("age", change=-5)]),
    ("can you make it stronger", SMILED, [edit("smiling", change=2)]),
    ("a bit more pronounced", GREW_BEARD, [edit("beard", change=1)]),
    ("dial it back", WORE_GLASSES, [edit("eyeglasses", change=-2)]),
    ("get rid of that", WORE_GLASSES, [edit("eyeglasses", target=0)]),
    ("take them off", WORE_GLASSES, [edit("eyeglasses", target=0)]),
    # back as it was before
    ("put the glasses back", TOOK_GLASSES_OFF, [edit("eyeglasses", target=5)]),
    ("bring back the smile", TOOK_GLASSES_OFF, [edit("smiling", target=3)]),
    ("put them back", TOOK_GLASSES_OFF, [edit("eyeglasses", target=5)]),
    ("put the beard back", TOOK_GLASSES_OFF, [edit("beard", target=3)]),   # never had one: as "add"
    # the last edit's change, on another attribute
    ("same for the beard", SMILED, [edit("beard", change=1)]),
    ("now do the same with the bangs", MADE_YOUNGER, [edit("bangs", change=-2)]),
]


@pytest.mark.parametrize("text,context,expected", FOLLOW_UPS, ids=[f"{t} ({c.focus})" for t, c, _ in FOLLOW_UPS])
def test_follow_up_uses_the_dialog_context(text, context, expected):
    assert calls(text, context) == expected


@pytest.mark.parametrize("text", ["a bit more", "even longer", "less", "too much, go back a little", "keep going",
                                  "a little", "all the way", "take it away", "make it stronger", "opposite"])
def test_follow_up_without_focus_is_unknown(text):
    assert parse(text) == [Intent("unknown")]


def test_follow_up_that_does_not_fit_the_focus_is_unknown():
    assert parse("even longer", SMILED) == [Intent("unknown")]   # a smile is not long


@pytest.mark.parametrize("text", ["no", "no thanks", "nope", "not now"])
def test_no_declines_the_suggestion(text):
    assert parse(text, ASKED_GLASSES) == [Intent("decline")]


def test_declining_and_asking_for_something_else():
    assert kinds("no, add a beard instead", ASKED_GLASSES) == ["decline", "edit"]


def test_yes_without_a_question_does_nothing():
    assert parse("ok") == [Intent("unknown")]


def test_no_beard_is_an_edit_even_with_a_pending_question():
    assert calls("no beard", ASKED_GLASSES) == [edit("beard", target=0)]


@pytest.mark.parametrize("text,thing", [
    ("make the background blue", "background"),
    ("add a hat", "hat"),
    ("give her earrings", "earrings"),
    ("put some makeup on her", "makeup"),
    ("make her hair blonde", "hair colour"),
    ("make her eyes green", "eyes"),
])
def test_out_of_scope_names_the_thing_and_edits_nothing(text, thing):
    assert parse(text) == [Intent("out_of_scope", thing=thing)]
    assert calls(text) == []


def test_mixed_message_gives_the_edit_and_the_out_of_scope_thing():
    intents = parse("make her smile and change the background to a beach")
    assert Intent("out_of_scope", thing="background") in intents
    assert intents_to_calls(intents) == [edit("smiling", target=2)]


def test_out_of_scope_comparative_does_not_touch_the_focus():
    assert parse("make the background darker", DialogContext(focus="eyeglasses", last_change=1)) == [
        Intent("out_of_scope", thing="background")]


@pytest.mark.parametrize("text", ["", "   ", "?!", "asdfgh qwerty", "the bread is good",
                                  "I think she looks fine", "Let me have a look. It would be nicer this way."])
def test_empty_garbage_and_chatter_are_unknown(text):
    assert parse(text) == [Intent("unknown")]
    assert parse(text, SMILED) == [Intent("unknown")]


@pytest.mark.parametrize("text", ["don't make him older", "please don't touch the glasses", "never add a beard",
                                  "I don't want the glasses to change", "no more changes to the beard"])
def test_negated_requests_edit_nothing(text):
    assert calls(text) == []


def test_typos_are_fixed_but_real_words_are_kept():
    assert normalise("smle glases") == ["smile", "glasses"]
    assert normalise("bread then think order") == ["bread", "then", "think", "order"]


def test_intents_to_calls_keeps_only_tool_calls_and_drops_empty_arguments():
    intents = [Intent("edit", "smiling", change=1), Intent("decline"), Intent("out_of_scope", thing="hat"),
               Intent("unknown"), Intent("undo", steps=2), Intent("new_face"), Intent("reset"), Intent("describe")]
    assert intents_to_calls(intents) == [
        edit("smiling", change=1), {"name": "undo", "args": {"steps": 2}}, {"name": "new_face", "args": {}},
        {"name": "reset", "args": {}}, {"name": "describe", "args": {}}]


def test_every_edit_has_exactly_one_of_target_and_change_in_range():
    for text, _ in REQUESTS:
        for intent in parse(text):
            if intent.kind == "edit":
                assert (intent.target is None) != (intent.change is None), text
                assert intent.target is None or 0 <= intent.target <= 5, text
                assert intent.change is None or (intent.change != 0 and -5 <= intent.change <= 5), text


@pytest.mark.skipif(DEFAULT_PATH is None, reason="shared/benchmarks/talk_to_edit_requests.jsonl not found")
def test_these_sentences_are_not_benchmark_sentences():
    def key(text):
        return " ".join(w for w in normalise(text) if w.replace(":", "").isalnum())   # "years:40" is content

    bench = {key(json.loads(line)["text"]) for line in DEFAULT_PATH.read_text().splitlines() if line.strip()}
    mine = [t for t, _ in REQUESTS] + [t for t, _, _ in FOLLOW_UPS]
    assert [t for t in mine if key(t) in bench] == []


@pytest.mark.parametrize("context,message", [
    (DialogContext(focus="hair"), "focus 'hair'"),
    (DialogContext(degrees={"freckles": 2}), "freckles"),
    (DialogContext(earlier={"hat": 1}), "earlier degrees name unknown attributes"),
    (DialogContext(suggestion={"name": "paint", "args": {}}), "paint"),
])
def test_bad_context_fails_loudly(context, message):
    with pytest.raises(ValueError, match=message):
        parse("more", context)


@pytest.mark.parametrize("text,expected", [
    ("make the beard as long as possible", edit("beard", target=5)), ("give him the darkest sunglasses", edit("eyeglasses", target=5)),
    ("her biggest smile", edit("smiling", target=5)), ("as young as you can", edit("age", target=0)),
    ("maximum smile", edit("smiling", change=5)), ("a mild smile", edit("smiling", target=1)),
    ("she should look like she's in college", edit("age", target=2)), ("big glasses", edit("eyeglasses", target=3)),
])
def test_far_ends_of_scales_and_other_degree_phrases(text, expected):
    assert calls(text) == [expected]


@pytest.mark.parametrize("text", ["smile a bit", "smile a little", "a little smile", "just a touch of a smile"])
def test_a_name_with_an_intensity_is_a_small_step(text):
    assert calls(text) == [edit("smiling", change=1)]


@pytest.mark.parametrize("text", ["perfect", "thanks!", "great", "that's enough", "looks good"])
def test_being_pleased_never_runs_the_pending_suggestion(text):
    assert parse(text, ASKED_GLASSES) == [Intent("content")]


@pytest.mark.parametrize("text", ["help", "what can you do?", "what else can you do", "how does this work?",
                                  "what are my options", "what can be changed here"])
def test_asking_what_it_can_do_is_help_not_an_edit(text):
    assert parse(text) == [Intent("help")]
    assert parse(text, SMILED) == [Intent("help")]


@pytest.mark.parametrize("text,expected", [("help me make her smile", [edit("smiling", target=2)]),
                                           ("can you help me add glasses", [edit("eyeglasses", target=2)])])
def test_help_around_a_request_is_the_request(text, expected):
    assert calls(text) == expected


@pytest.mark.parametrize("text,kind", [
    ("cancel that", "undo"), ("scrap that", "undo"), ("actually I liked it better before", "undo"),
    ("nevermind, go back to how it was", "undo"), ("make her look like she did at the start", "reset"),
    ("back to the first picture", "reset"), ("what's different from the original?", "describe"), ("can I upload my own photo?", "files"), ("save this", "files"),
    ("how do I download the image", "files"), ("let me see the before and after", "files"), ("keep it like this", "content"),
    ("let's start fresh", "reset"),
    # questions about the face are answered, not carried out
    ("does she have glasses?", "describe"), ("is he smiling", "describe"), ("how long are her bangs?", "describe"),
])
def test_commands_said_in_other_words(text, kind):
    assert kinds(text, SMILED) == [kind]


def test_a_request_about_my_photo_is_the_request():
    assert calls("make my photo look older") == [edit("age", change=2)]


@pytest.mark.parametrize("text,expected", [
    ("smile at 50%", edit("smiling", target=3)), ("glasses 100%", edit("eyeglasses", target=5)),
    ("give her a 20 percent smile", edit("smiling", target=1)), ("beard 0%", edit("beard", target=0)),
    ("smile -1", edit("smiling", change=-1)), ("+1 age", edit("age", change=1)), ("bangs +5", edit("bangs", change=5)),
    ("age=4", edit("age", target=4)),
])
def test_numbers_as_a_researcher_types_them(text, expected):
    assert calls(text) == [expected]


def test_signed_numbers_leave_years_and_ranges_alone():
    assert calls("make him 10 years younger") == [edit("age", change=-1)]
    assert normalise("a 2-3 degree smile") == ["a", "2", "3", "degree", "smile"]


@pytest.mark.parametrize("text,expected", [
    ("no I wanted her older", [edit("age", change=2)]),                       # not "no older"
    ("no wait, give him a beard", [edit("beard", target=3)]),
    ("not glasses, I meant a beard", [edit("eyeglasses", target=0), edit("beard", target=3)]),
    ("instead of glasses, a beard", [edit("eyeglasses", target=0), edit("beard", target=3)]),
    ("no glasses", [edit("eyeglasses", target=0)]),                             # still a removal
])
def test_corrections(text, expected):
    assert calls(text, WORE_GLASSES) == expected


def test_undo_names_what_to_take_back():
    context = DialogContext(focus="smiling", last_change=2, degrees={"eyeglasses": 2, "smiling": 3, "beard": 0},
                            earlier={"eyeglasses": 0, "smiling": 1})
    assert calls("undo the glasses and the smile", context) == [edit("eyeglasses", target=0), edit("smiling", target=1)]
    assert calls("undo the smile", context) == [{"name": "undo", "args": {"steps": 1}}]   # the last edit itself
    assert calls("can you remove the last change", context) == [{"name": "undo", "args": {"steps": 1}}]
    assert calls("undo the glasses") == [{"name": "undo", "args": {"steps": 1}}]   # no history known: a plain undo


@pytest.mark.parametrize("text,expected", [
    ("show me what he'll look like in 30 years", edit("age", change=2)), ("fast forward 20 years", edit("age", change=1)),
    ("age him by a decade", edit("age", change=1)), ("two decades younger", edit("age", change=-1)),
    ("reverse aging", edit("age", change=-2)), ("make him look like his dad", edit("age", change=2)),
    ("make her look like her daughter", edit("age", change=-2)), ("she's 40 now", edit("age", target=3)),
])
def test_time_said_as_people_say_it(text, expected):
    assert calls(text) == [expected]


@pytest.mark.parametrize("text,expected", [
    ("round glasses", [edit("eyeglasses", target=2)]), ("hipster glasses", [edit("eyeglasses", target=3)]),
    ("wayfarers", [edit("eyeglasses", target=5)]), ("tinted lenses", [edit("eyeglasses", target=4)]),
    ("glasses on", [edit("eyeglasses", target=2)]), ("give him a monocle", []),
])
def test_kinds_of_glasses(text, expected):
    assert calls(text) == expected


SUNGLASSES_THICK = DialogContext(focus="eyeglasses", last_change=2, degrees={"eyeglasses": 5, "smiling": 1})
FRAMES_THICK = DialogContext(focus="eyeglasses", last_change=3, degrees={"eyeglasses": 3, "smiling": 1})
NO_GLASSES = DialogContext(focus="smiling", last_change=1, degrees={"eyeglasses": 0, "smiling": 2})


@pytest.mark.parametrize("text,context,expected", [
    # the tint goes, the thick frame stays
    ("remove the tint", SUNGLASSES_THICK, 3), ("keep the frames but lose the tint", SUNGLASSES_THICK, 3),
    ("no more sunglasses, just normal glasses", SUNGLASSES_THICK, 3), ("clear lenses please", SUNGLASSES_THICK, 3),
    ("swap the sunglasses for clear ones", SUNGLASSES_THICK, 3),
    # the frame stays, the lenses darken; from none, thin-framed sunglasses
    ("tint them", FRAMES_THICK, 5), ("make them tinted", FRAMES_THICK, 5), ("tinted glasses", NO_GLASSES, 4),
    ("replace the normal glasses with sunglasses", FRAMES_THICK, 4),
    # asking for clear glasses adds them; taking away a tint there is not does nothing
    ("give her normal glasses", NO_GLASSES, 2), ("remove the tint", NO_GLASSES, 0), ("remove the tint", FRAMES_THICK, 3),
    # the glasses themselves go
    ("remove the tinted glasses", SUNGLASSES_THICK, 0), ("take off the normal glasses", FRAMES_THICK, 0),
])
def test_lenses_apart_from_frames(text, context, expected):
    assert calls(text, context) == [edit("eyeglasses", target=expected)]


@pytest.mark.parametrize("text,expected", [
    ("is it possible to add glasses", [edit("eyeglasses", target=2)]), ("have her smile", [edit("smiling", target=2)]),
])
def test_polite_requests_phrased_as_questions_are_still_requests(text, expected):
    assert calls(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("smile: 3", [edit("smiling", target=3)]), ("bangs 0", [edit("bangs", target=0)]),
    ("age 4, smile 2", [edit("age", target=4), edit("smiling", target=2)]),   # a degree, not a four-year-old
    ("aged 4", [edit("age", target=0)]), ("bangs 2 steps longer", [edit("bangs", change=2)]),
    ("make him look friendlier", [edit("smiling", change=2)]),
])
def test_an_attribute_and_its_degree_typed_tersely(text, expected):
    assert calls(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("he looks too old, take a few years off", edit("age", change=-1)), ("give him a few more years", edit("age", change=1)),
    ("add a couple of years", edit("age", change=1)), ("i dont like the beard", edit("beard", target=0)),
    ("make her a 5 year old", edit("age", target=0)),
])
def test_few_years_and_missing_apostrophes(text, expected):
    assert calls(text) == [expected]


def test_a_hello_is_greeted_and_what_follows_it_is_read():
    assert kinds("hello") == ["greeting"] and kinds("hi there!") == ["greeting"]
    assert calls("hi, can you make her smile") == [edit("smiling", target=2)]


def test_add_one_after_asking_about_an_attribute_adds_that_one():
    asked = DialogContext(focus="beard", degrees={"beard": 0, "eyeglasses": 3})
    assert calls("ok add one", asked) == [edit("beard", target=3)]
    assert calls("add one", WORE_GLASSES) == []   # the focus already has glasses: "one" of what?


def test_too_much_of_what_the_last_edit_added_is_a_step_back():
    aged = DialogContext(focus="age", last_change=2, degrees={"age": 4, "smiling": 1})
    assert calls("hmm, too old", aged) == [edit("age", change=-1)]   # a correction of the edit just made
    assert calls("she looks too old") == [edit("age", change=-2)]    # on a face as it came: a request
    assert calls("the smile is too big", aged) == [edit("smiling", change=-2)]


def test_refusing_a_tint_asks_for_nothing():
    assert kinds("don't tint them", FRAMES_THICK) == ["unknown"]


@pytest.mark.parametrize("text,expected", [
    ("make him 25", 2), ("make her 40 please", 3), ("can you make them 70", 5), ("age her to 50", 4),
])
def test_a_bare_number_of_years_is_an_age(text, expected):
    assert calls(text) == [edit("age", target=expected)]


def test_small_numbers_and_ranges_are_not_ages():
    assert calls("make her 3") != [edit("age", target=0)]
    assert calls("set the smile to 20") != [edit("age", target=2)]   # no word about age before "to"


def test_the_same_as_before_is_that_attribute_as_it_was():
    context = DialogContext(focus="smiling", last_change=1, degrees={"bangs": 3, "smiling": 3, "beard": 2},
                            earlier={"bangs": 1, "smiling": 2})
    assert calls("make the bangs the same length as before", context) == [edit("bangs", target=1)]
    assert calls("fringe like before", context) == [edit("bangs", target=1)]
    assert calls("make the smile the same as before", context) == [{"name": "undo", "args": {"steps": 1}}]
    assert kinds("put the beard back the way it was", context) == ["edit"]   # never changed: stays, and says so
    assert calls("put the beard back the way it was", context) == [edit("beard", target=2)]
