"""Prompt protocols on a scripted in-test backend (the protocol logic is under test, not a
remote API): maj@k, retry-until-valid, context-carry, two-stage, free description, transport
failures, prompt hashes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from inference.datasets.base import ImageRecord
from inference.vlm.prompts import load_template, load_templates, template_from_dict
from inference.vlm.protocols import ProtocolConfig, run_protocol
from inference.vlm.types import (
    ChatBackend, ChatRequest, ChatResponse, GenerationParams, TransportError,
)

IMAGE = ImageRecord(
    image_id="smiling_front/001_08.jpg", path=Path("/nonexistent/001_08.jpg"),
    image_hash="ab" * 32, source_label="smiling", identity="001", race="white",
    gender="female", age=24.0, width=1350, height=1350,
)
JPEG = b"\xff\xd8\xff\xe0fake-jpeg"


class ScriptedBackend:
    """Answers requests from a script in order: a str (reply text), a ChatResponse, or a
    TransportError (raised). Records every request."""

    name = "scripted"

    def __init__(self, *script):
        self.script = list(script)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if not self.script:
            raise AssertionError("backend asked more often than scripted")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ChatResponse):
            return item
        return ChatResponse(text=item, input_tokens=100, output_tokens=3, latency_ms=12.5)


def run(backend, protocol, **kw):
    return asyncio.run(run_protocol(backend, protocol, IMAGE, JPEG, "image/jpeg", **kw))


def test_backend_satisfies_the_protocol():
    assert isinstance(ScriptedBackend(), ChatBackend)


def test_single_one_call_with_image_and_answer_fields():
    backend = ScriptedBackend("Happy")
    result = run(backend, ProtocolConfig("single", "chhua_single", temperature=1.0))
    assert len(backend.requests) == 1 and not result.failures
    (req,) = backend.requests
    assert req.params.temperature == 1.0 and req.image_bytes == JPEG
    assert [(t.role, t.with_image) for t in req.turns] == [("user", True)]
    assert req.turns[0].text.startswith("Classify the image into one of the eight expressions")
    (a,) = result.answers
    assert (a.protocol, a.step, a.step_name, a.sample_index, a.attempt) == ("single", 1, "emotion", 0, 1)
    assert (a.parse_status, a.predicted_label, a.raw_text) == ("ok", "happy", "Happy")
    assert a.prompt_hash == load_template("chhua_single").hash
    assert (a.input_tokens, a.output_tokens, a.latency_ms) == (100, 3, 12.5)
    assert a.image_id == IMAGE.image_id and a.image_hash == IMAGE.image_hash
    assert a.preprocessing["template"] == "chhua_single"


def test_maj_at_5_votes():
    backend = ScriptedBackend("Happy", "Neutral", "happy", "I think the person looks happy", "Sad")
    protocol = ProtocolConfig("maj_at_k", "chhua_single", k=5, temperature=1.0,
                              params=GenerationParams(seed=7))
    result = run(backend, protocol)
    assert [a.sample_index for a in result.answers] == [0, 1, 2, 3, 4]
    assert all(r.params.temperature == 1.0 for r in backend.requests)
    # samples are told apart for caches and get distinct seeds
    assert len({r.key() for r in backend.requests}) == 5
    assert [(r.sample_index, r.attempt) for r in backend.requests] == [(i, 1) for i in range(5)]
    assert len({r.params.seed for r in backend.requests}) == 5
    vote = result.vote()
    assert (vote.label, vote.n_votes, vote.is_tie, vote.n_valid) == ("happy", 3, False, 5)


def test_maj_at_k_tie_is_flagged_like_the_marts():
    backend = ScriptedBackend("Sad", "Happy", "I'm sorry, I can't help with that.")
    result = run(backend, ProtocolConfig("maj_at_k", "chhua_single", k=3, temperature=1.0))
    vote = result.vote()
    assert (vote.label, vote.is_tie, vote.n_samples, vote.n_valid) == ("happy", True, 3, 2)
    assert result.answers[2].parse_status == "refused"


def test_retry_until_valid_stops_at_first_valid_and_stores_each_try():
    backend = ScriptedBackend("I'm sorry, I cannot help.", "happy or sad", "Contempt", "Emotion: Sad.")
    result = run(backend, ProtocolConfig("retry_until_valid", "chhua_single", temperature=1.0))
    assert [a.attempt for a in result.answers] == [1, 2, 3, 4]
    assert [a.parse_status for a in result.answers] == ["refused", "unparseable", "off_label", "repaired"]
    assert result.answers[2].preprocessing["off_label_word"] == "contempt"
    assert result.answers[-1].predicted_label == "sad"
    assert all(a.predicted_label is None for a in result.answers[:3])
    assert len(backend.requests) == 4 and len({r.variant for r in backend.requests}) == 4
    assert [(r.sample_index, r.attempt) for r in backend.requests] == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert result.final_answers()[0].predicted_label == "sad"


def test_retry_until_valid_gives_up_after_max_tries():
    backend = ScriptedBackend(*["I cannot do that."] * 10)
    result = run(backend, ProtocolConfig("retry_until_valid", "chhua_single"))
    assert len(result.answers) == 10 and len(backend.requests) == 10
    assert [a.attempt for a in result.answers] == list(range(1, 11))
    assert {a.parse_status for a in result.answers} == {"refused"}
    assert result.vote().label is None


def test_maj_at_k_with_retries_per_sample():
    backend = ScriptedBackend("unsure", "Fear", "Fear")
    protocol = ProtocolConfig("maj_at_k", "chhua_single", k=2, temperature=1.0, retry_invalid=True)
    result = run(backend, protocol)
    assert [(a.sample_index, a.attempt) for a in result.answers] == [(0, 1), (0, 2), (1, 1)]
    assert result.vote().label == "fear"


def test_single_does_not_retry():
    backend = ScriptedBackend("unsure")
    result = run(backend, ProtocolConfig("single", "chhua_single"))
    assert [a.parse_status for a in result.answers] == ["unparseable"]


def test_provider_refusal_is_refused():
    backend = ScriptedBackend(ChatResponse(text=None, refused=True, finish_reason="SAFETY"))
    (a,) = run(backend, ProtocolConfig("single", "chhua_single")).answers
    assert (a.parse_status, a.raw_text, a.predicted_label) == ("refused", None, None)
    assert a.preprocessing["finish_reason"] == "SAFETY"


def test_cot_reads_the_answer_line():
    text = "The lips are pressed and brows lowered, as in anger or disgust... no nose wrinkle.\nAnswer: Anger"
    backend = ScriptedBackend(text)
    (a,) = run(backend, ProtocolConfig("cot", "chhua_cot", temperature=1.0)).answers
    assert (a.protocol, a.parse_status, a.predicted_label) == ("cot", "ok", "anger")
    assert "step by step" in backend.requests[0].turns[0].text


def test_paligemma_prompt_is_lower_case_with_answer_en():
    backend = ScriptedBackend("happy")
    run(backend, ProtocolConfig("single", "paligemma_answer_en"))
    text = backend.requests[0].turns[0].text
    assert text.startswith("answer en ") and text == text.lower()


def test_context_carry_sends_three_turns_with_previous_answers():
    backend = ScriptedBackend("Angry", "Valence: 12", "7")
    result = run(backend, ProtocolConfig("context_carry", "tae_context_carry"))
    assert not result.failures
    r1, r2, r3 = backend.requests
    assert [t.role for t in r1.turns] == ["user"]
    assert [t.role for t in r2.turns] == ["user", "assistant", "user"]
    assert [t.role for t in r3.turns] == ["user", "assistant", "user", "assistant", "user"]
    assert [t.with_image for t in r3.turns] == [True, False, False, False, False]
    assert r1.turns[0].text == ("What is the facial expression in this image? Choose one from: "
                                "happy, sad, angry, fear, disgust, neutral. Answer with a single "
                                "word only.")
    # earlier replies are carried verbatim, and the parsed answers fill the templates
    assert r2.turns[1].text == "Angry" and r3.turns[3].text == "Valence: 12"
    assert r2.turns[2].text.startswith("You identified this face as angry. How pleasant")
    assert r3.turns[4].text.startswith("You identified this face as angry with pleasantness 9 out of 9.")
    assert r3.turns[:3] == r2.turns
    emotion, valence, arousal = result.answers
    assert [(a.step, a.step_name) for a in result.answers] == [(1, "emotion"), (2, "valence"), (3, "arousal")]
    assert (emotion.predicted_label, emotion.parse_status) == ("anger", "ok")
    assert (valence.predicted_value, valence.raw_value, valence.parse_status) == (9.0, 12.0, "repaired")
    assert "clamped" in valence.value_mapping
    assert (arousal.predicted_value, arousal.parse_status) == (7.0, "ok")
    assert len({a.prompt_hash for a in result.answers}) == 1


def test_context_carry_stops_when_the_emotion_is_not_valid():
    backend = ScriptedBackend("I'm sorry, I can't identify emotions.")
    result = run(backend, ProtocolConfig("context_carry", "tae_context_carry"))
    assert len(backend.requests) == 1
    assert [(a.step_name, a.parse_status) for a in result.answers] == [("emotion", "refused")]


def test_context_carry_image_on_every_step():
    backend = ScriptedBackend("happy", "8", "7")
    run(backend, ProtocolConfig("context_carry", "tae_context_carry", image_on_every_step=True))
    assert [t.with_image for t in backend.requests[2].turns] == [True, False, True, False, True]


def test_two_stage_non_neutral_asks_six_classes():
    backend = ScriptedBackend("non-Neutral", "Surprise")
    result = run(backend, ProtocolConfig("two_stage", "asanuma_two_stage"))
    assert len(backend.requests) == 2
    assert [t.role for t in backend.requests[1].turns] == ["user"]  # a fresh question
    assert "Emotion List: Anger, Disgust, Fear, Happy, Sad, Surprise" in backend.requests[1].turns[0].text
    gate, emotion = result.answers
    assert (gate.step, gate.step_name, gate.predicted_label) == (1, "neutral_gate", "non_neutral")
    assert (emotion.step, emotion.step_name, emotion.predicted_label) == (2, "emotion", "surprise")
    assert result.vote().label == "surprise"


def test_two_stage_neutral_records_a_derived_emotion_row():
    backend = ScriptedBackend("Neutral")
    result = run(backend, ProtocolConfig("two_stage", "asanuma_two_stage"))
    assert len(backend.requests) == 1
    gate, emotion = result.answers
    assert (gate.step_name, gate.predicted_label, gate.raw_text) == ("neutral_gate", "neutral", "Neutral")
    assert (emotion.step, emotion.step_name, emotion.predicted_label, emotion.parse_status) == (
        2, "emotion", "neutral", "ok")
    assert emotion.raw_text is None and emotion.input_tokens is None and emotion.latency_ms is None
    assert emotion.preprocessing["derived_from"] == "neutral_gate"
    assert result.final_answers()[0] is emotion


def test_two_stage_six_class_neutral_answer_is_off_label():
    backend = ScriptedBackend("not neutral", "Neutral")
    result = run(backend, ProtocolConfig("two_stage", "asanuma_two_stage"))
    assert result.answers[1].parse_status == "off_label"


def test_two_stage_failed_gate_gives_an_unanswered_emotion_row():
    backend = ScriptedBackend("I cannot help with that.")
    result = run(backend, ProtocolConfig("two_stage", "asanuma_two_stage"))
    gate, emotion = result.answers
    assert gate.parse_status == "refused"
    assert (emotion.step_name, emotion.parse_status, emotion.predicted_label) == ("emotion", "refused", None)


def test_n_class_without_neutral():
    backend = ScriptedBackend("Neutral")
    (a,) = run(backend, ProtocolConfig("n_class_without_neutral", "asanuma_6class")).answers
    assert (a.parse_status, a.predicted_label) == ("off_label", None)
    with pytest.raises(ValueError, match="without 'neutral'"):
        run(ScriptedBackend(), ProtocolConfig("n_class_without_neutral", "asanuma_7class"))


def test_answers_record_the_protocol_and_the_labels_offered_whatever_the_stored_name():
    six = ["anger", "disgust", "fear", "happy", "sad", "surprise"]
    result = run(ScriptedBackend("Neutral"), ProtocolConfig("two_stage", "asanuma_two_stage", stored_as="exp4"))
    gate, emotion = result.answers
    assert {a.protocol for a in result.answers} == {"exp4"}
    assert gate.preprocessing["protocol_name"] == emotion.preprocessing["protocol_name"] == "two_stage"
    assert "offered_labels" not in gate.preprocessing and emotion.preprocessing["offered_labels"] == six
    (a,) = run(ScriptedBackend("Sad"), ProtocolConfig("single", "asanuma_6class", stored_as="exp3")).answers
    assert (a.preprocessing["protocol_name"], a.preprocessing["offered_labels"]) == ("single", six)
    (b,) = run(ScriptedBackend("Sad"), ProtocolConfig("single", "asanuma_7class"),
               label_set=["happy", "neutral", "sad"]).answers
    assert b.preprocessing["offered_labels"] == ["happy", "neutral", "sad"]  # narrowed by the label set


def test_free_description():
    text = "The person has a broad smile with raised cheeks; they look cheerful."
    backend = ScriptedBackend(text)
    (a,) = run(backend, ProtocolConfig("free_description", "free_description")).answers
    assert (a.step_name, a.parse_status, a.predicted_label, a.raw_text) == ("description", "ok", None, text)


def test_transport_failure_is_recorded_not_guessed():
    error = TransportError("rate_limited", "429 Too Many Requests", retry_after=3.0, status=429)
    assert error.retryable and not TransportError("client_error", "400").retryable
    backend = ScriptedBackend("Happy", error, "Sad")
    result = run(backend, ProtocolConfig("maj_at_k", "chhua_single", k=3, temperature=1.0))
    assert [a.sample_index for a in result.answers] == [0, 2]  # no answer for sample 1
    (f,) = result.failures
    assert (f.step, f.sample_index, f.attempt, f.kind, f.status) == (1, 1, 1, "rate_limited", 429)
    assert f.message == "429 Too Many Requests"


def test_transport_failure_stops_the_sample_mid_protocol():
    backend = ScriptedBackend("happy", TransportError("timeout", "read timed out"))
    result = run(backend, ProtocolConfig("context_carry", "tae_context_carry"))
    assert [a.step_name for a in result.answers] == ["emotion"]
    assert [(f.step, f.step_name, f.kind) for f in result.failures] == [(2, "valence", "timeout")]
    assert len(backend.requests) == 2  # arousal is never asked


def test_transport_failure_during_retries_keeps_earlier_tries():
    backend = ScriptedBackend("unsure", TransportError("server_error", "502", status=502))
    result = run(backend, ProtocolConfig("retry_until_valid", "chhua_single"))
    assert [a.attempt for a in result.answers] == [1]
    assert [(f.attempt, f.kind) for f in result.failures] == [(2, "server_error")]


def test_label_set_narrows_the_accepted_labels():
    backend = ScriptedBackend("Calm")
    labels = ["happy", "anger", "sad", "neutral", "disgust", "fear", "surprise"]
    (a,) = run(backend, ProtocolConfig("single", "chhua_single"), label_set=labels).answers
    assert a.parse_status == "off_label"
    with pytest.raises(ValueError, match="does not offer"):
        run(ScriptedBackend(), ProtocolConfig("single", "chhua_single"), label_set=["contempt"])


def test_protocol_template_shape_is_checked():
    with pytest.raises(ValueError, match="needs a template"):
        run(ScriptedBackend(), ProtocolConfig("context_carry", "chhua_single"))
    with pytest.raises(ValueError, match="not one of"):
        ProtocolConfig("majority", "chhua_single")


def test_prompt_hash_is_stable_and_changes_with_the_text():
    first, second = load_templates(), load_templates()
    assert {k: t.hash for k, t in first.items()} == {k: t.hash for k, t in second.items()}
    assert len({t.hash for t in first.values()}) == len(first)
    assert set(first) == {"chhua_single", "chhua_cot", "paligemma_answer_en", "tae_context_carry",
                          "asanuma_7class", "asanuma_6class", "asanuma_two_stage", "free_description"}
    raw = dict(first["chhua_single"].raw)
    assert template_from_dict(raw).hash == first["chhua_single"].hash
    edited = dict(raw, steps=[dict(raw["steps"][0], text=raw["steps"][0]["text"] + " ")])
    changed = template_from_dict(edited)
    assert changed.hash != first["chhua_single"].hash
    # the edited template's hash is what answers carry
    (a,) = run(ScriptedBackend("Happy"), ProtocolConfig("single", "chhua_single"),
               template=changed).answers
    assert a.prompt_hash == changed.hash
    assert template_from_dict(dict(raw, version=2)).hash != first["chhua_single"].hash


def test_request_keys_are_stable():
    params = GenerationParams(temperature=1.0, seed=3)
    assert params.key() == GenerationParams(temperature=1, seed=3).key()
    assert params.key() != replace(params, seed=4).key()
    backend_a, backend_b = ScriptedBackend("Happy"), ScriptedBackend("Happy")
    run(backend_a, ProtocolConfig("single", "chhua_single"))
    run(backend_b, ProtocolConfig("single", "chhua_single"))
    assert backend_a.requests[0].key() == backend_b.requests[0].key()
