"""Parsing of VLM answers: labels (JSON / fences / regex / 3-character prefixes / synonyms,
refusals, off-label, ambiguity) and numbers on a 1-9 scale (clamping, fractions, words)."""

from __future__ import annotations

import pytest

from inference.models.base import PARSE_STATUSES
from inference.vlm.parsing import parse_label, parse_scale

SEVEN = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
SIX = ["anger", "disgust", "fear", "happy", "sad", "surprise"]
CHHUA = ["happy", "anger", "sad", "neutral", "calm", "disgust", "fear", "surprise"]
TAE = ["happy", "sad", "anger", "fear", "disgust", "neutral"]
TAE_WORDS = {"anger": "angry"}


@pytest.mark.parametrize(
    "text, label, status",
    [
        # clean exact answers
        ("Happy", "happy", "ok"),
        ("happy", "happy", "ok"),
        ("  Surprise\n", "surprise", "ok"),
        ("Sad.", "sad", "ok"),
        ("'Neutral'", "neutral", "ok"),
        ('{"emotion": "Sad"}', "sad", "ok"),
        ('{"emotion": "fear", "confidence": 0.82}', "fear", "ok"),
        ('"disgust"', "disgust", "ok"),
        # fences, embedded JSON
        ('```json\n{"emotion": "fear"}\n```', "fear", "repaired"),
        ("```\nanger\n```", "anger", "repaired"),
        ('Here is my answer: {"expression": "happy"}', "happy", "repaired"),
        # answer markers (regex)
        ("Emotion: Happy.", "happy", "repaired"),
        ("The answer is: ang", "anger", "repaired"),
        ("**Answer:** Surprise", "surprise", "repaired"),
        ("The facial expression is one of surprise.", "surprise", "repaired"),
        # sentences naming one emotion
        ("I think the person looks surprised", "surprise", "repaired"),
        ("The woman in the image appears to be smiling and happy.", "happy", "repaired"),
        # synonyms and 3-character prefixes
        ("angry", "anger", "repaired"),
        ("Sadness", "sad", "repaired"),
        ("happiness", "happy", "repaired"),
        ("surprised", "surprise", "repaired"),
        ("Fearful", "fear", "repaired"),
        ("disgusted", "disgust", "repaired"),
        ("surpr", "surprise", "repaired"),
        ("ang", "anger", "repaired"),
        ("Neutr", "neutral", "repaired"),
        # refusals
        ("I'm sorry, but I can't help with identifying emotions of real people.", None, "refused"),
        ("I cannot determine the emotion of this person.", None, "refused"),
        ("As an AI, I do not make judgments about people's feelings.", None, "refused"),
        ("I'm unable to analyze this image.", None, "refused"),
        # a refusal phrase switches off the loose sentence rule, not an explicit answer
        ("Sorry, I cannot tell whether this person is happy.", None, "refused"),
        ("Sorry, it is hard to tell. Answer: sad", "sad", "repaired"),
        # off-label: a clear emotion word the prompt did not offer
        ("Contempt", None, "off_label"),
        ("doubt", None, "off_label"),
        ("Emotion: Confusion", None, "off_label"),
        # never guess
        ("happy or sad", None, "unparseable"),
        ("The person looks happy, but also a bit sad.", None, "unparseable"),
        ("The facial features suggest a subtle expression.", None, "unparseable"),
        ("", None, "unparseable"),
        ("   ", None, "unparseable"),
        ("con", None, "unparseable"),  # no allowed label starts with 'con'
    ],
)
def test_parse_label_seven_classes(text, label, status):
    parsed = parse_label(text, SEVEN)
    assert (parsed.label, parsed.status) == (label, status), parsed
    assert parsed.status in PARSE_STATUSES


def test_none_text_is_unparseable():
    assert parse_label(None, SEVEN).status == "unparseable"


def test_off_label_keeps_the_word():
    parsed = parse_label("Contempt", SEVEN)
    assert parsed.word == "contempt" and parsed.label is None
    assert parse_label("contempt", SEVEN + ["contempt"]).label == "contempt"


def test_neutral_is_off_label_for_the_six_class_prompt():
    parsed = parse_label("Neutral", SIX)
    assert (parsed.label, parsed.status, parsed.word) == (None, "off_label", "neutral")
    assert parse_label("Neutral", SEVEN).status == "ok"


def test_calm_is_a_label_for_chhua_and_off_label_for_seven_classes():
    assert parse_label("Calm", CHHUA).label == "calm"
    assert parse_label("Calm", SEVEN).status == "off_label"


def test_prompt_word_is_exact():
    # Tae et al. offer 'angry' for the canonical label anger: answering it is a clean answer
    assert parse_label("angry", TAE, words=TAE_WORDS) == parse_label("Angry", TAE, words=TAE_WORDS)
    parsed = parse_label("angry", TAE, words=TAE_WORDS)
    assert (parsed.label, parsed.status) == ("anger", "ok")
    assert parse_label('{"emotion": "angry"}', TAE, words=TAE_WORDS).status == "ok"
    assert parse_label("Anger", TAE, words=TAE_WORDS).status == "ok"  # the label itself


def test_chain_of_thought_reads_the_final_answer_line():
    text = (
        "Let's think step by step. The eyebrows are raised and the mouth is open, which can "
        "indicate fear or surprise. The eyes are wide but there is no tension in the lips, "
        "so it is not fear.\nAnswer: Surprise"
    )
    parsed = parse_label(text, CHHUA, answer_line="Answer:")
    assert (parsed.label, parsed.status) == ("surprise", "ok")  # the requested format
    # without the requested format it is still found, but as a repair
    assert parse_label(text, CHHUA).status == "repaired"
    bare_last_line = "The corners of the mouth are raised, unlike sad or angry faces.\n\nHappy"
    parsed = parse_label(bare_last_line, CHHUA)
    assert (parsed.label, parsed.status) == ("happy", "repaired")


def test_chain_of_thought_without_a_final_answer_is_ambiguous():
    text = "The mouth could show fear; the eyebrows could show surprise."
    assert parse_label(text, CHHUA).status == "unparseable"


def test_fuzzy_prefix_applies_to_an_isolated_answer_only():
    # 'feature' starts like 'fear' and 'surely' like 'surprise': a sentence is not fuzzy-matched
    assert parse_label("Surely the feature is unclear.", SEVEN).status == "unparseable"
    assert parse_label("fea", SEVEN).label == "fear"


def test_gate_labels():
    words = {"non_neutral": "non-neutral"}
    gate = ["neutral", "non_neutral"]
    assert parse_label("Neutral", gate, words=words).label == "neutral"
    assert (parse_label("non-Neutral", gate, words=words).label,
            parse_label("non-Neutral", gate, words=words).status) == ("non_neutral", "ok")
    assert parse_label("Not neutral.", gate, words=words).label == "non_neutral"
    assert parse_label("The expression is non-neutral.", gate, words=words).label == "non_neutral"


def test_extra_synonyms():
    parsed = parse_label("mad", SEVEN, synonyms={"anger": ["mad"]})
    assert (parsed.label, parsed.status) == ("anger", "repaired")


@pytest.mark.parametrize(
    "text, value, raw, status",
    [
        ("7", 7.0, 7.0, "ok"),
        (" 8. ", 8.0, 8.0, "ok"),
        ('{"valence": 3}', 3.0, 3.0, "ok"),
        ('{"arousal": "6"}', 6.0, 6.0, "ok"),
        ("6.5", 6.5, 6.5, "ok"),
        ("Valence: 12", 9.0, 12.0, "repaired"),  # clamped to the scale
        ("0", 1.0, 0.0, "repaired"),
        ("-3", 1.0, -3.0, "repaired"),
        ("7/9", 7.0, 7.0, "repaired"),
        ("I would rate it 7 out of 9.", 7.0, 7.0, "repaired"),
        ("On a scale from 1 to 9, I would say 6.", 6.0, 6.0, "repaired"),
        ("Rating (1-9): 4", 4.0, 4.0, "repaired"),
        ("```json\n{\"valence\": 2}\n```", 2.0, 2.0, "repaired"),
        ("```\n5\n```", 5.0, 5.0, "repaired"),
        ("Arousal: 8 (high activation)", 8.0, 8.0, "repaired"),
        # number words: one English word zero..ten is read, as a repair
        ("seven", 7.0, 7.0, "repaired"),
        ("I'd say seven.", 7.0, 7.0, "repaired"),
        # never guess
        ("3 or 4", None, None, "unparseable"),
        ("between five and six", None, None, "unparseable"),
        ("very pleasant", None, None, "unparseable"),
        ("", None, None, "unparseable"),
        ("I cannot rate this person's emotions.", None, None, "refused"),
    ],
)
def test_parse_scale(text, value, raw, status):
    parsed = parse_scale(text, 1, 9)
    assert (parsed.value, parsed.raw_value, parsed.status) == (value, raw, status), parsed


def test_parse_scale_marker_wins_over_other_numbers():
    parsed = parse_scale("Considering the 2 raised brows, valence: 3", 1, 9)
    assert (parsed.value, parsed.status) == (3.0, "repaired")


def test_parse_scale_clamps_flag():
    parsed = parse_scale("Valence: 12")
    assert parsed.clamped and parsed.value == 9.0 and parsed.raw_value == 12.0
    assert not parse_scale("9").clamped
