"""Unit tests of the FER baseline kinds (image_classifier, hsemotion): label mapping through the
seed, the offline error, valence/arousal on [1, 9], weight loading; random-initialised weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_baseline_support import face_records, hsemotion_weights, tiny_vit
from inference.config import ModelConfig
from inference.datasets.labels import load_label_map
from inference.models import EvaluationContext, build_model
from inference.models.fer_baselines import FerModelError, va_value
from inference.models.hsemotion import LABELS_7, LABELS_8, parse_variant

MAPPING = "[-1, 1] -> [1, 9]: v' = (v + 1) / 2 * 8 + 1"


def _model(name: str, kind: str, **options):
    return build_model(ModelConfig(name=name, kind=kind, version="v1", options=options), Path("unused-cache"))


@pytest.mark.parametrize(("raw", "value", "clamped"), [
    (-1.0, 1.0, False), (0.0, 5.0, False), (1.0, 9.0, False), (0.5, 7.0, False), (1.3, 9.0, True), (-2.0, 1.0, True),
])
def test_valence_arousal_go_from_minus_one_one_to_one_nine_and_say_when_clamped(raw, value, clamped):
    mapped, mapping = va_value(raw)
    assert mapped == pytest.approx(value)
    assert mapping.startswith(MAPPING)
    assert ("clamped from" in mapping) is clamped


def test_hsemotion_and_hf_label_sets_map_to_the_canonical_emotions():
    labels = load_label_map()
    assert [labels.canonical("hsemotion", x) for x in LABELS_8] == [
        "anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert [labels.canonical("hf_fer", x) for x in ("Angry", "happiness", "Surprised", "fearful")] == [
        "anger", "happy", "surprise", "fear"]


def test_hsemotion_variants_follow_the_library_naming():
    va = parse_variant("enet_b0_8_va_mtl", "w")
    assert (va.architecture, va.image_size, va.labels, va.valence_arousal, va.outputs) == (
        "tf_efficientnet_b0", 224, LABELS_8, True, 10)
    b2 = parse_variant("enet_b2_7", "w")
    assert (b2.architecture, b2.image_size, b2.labels, b2.valence_arousal) == ("tf_efficientnet_b2", 260, LABELS_7, False)
    with pytest.raises(FerModelError, match="mbf_va_mtl.*not an HSEmotion EfficientNet variant"):
        parse_variant("mbf_va_mtl", "models.x.options")


def test_image_classifier_offline_with_nothing_cached_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FerModelError) as err:
        _model("vitfer", "image_classifier", model="someone/vit-fer-not-cached", revision="abc")
    text = str(err.value)
    assert "hf download someone/vit-fer-not-cached --revision abc" in text
    assert f"{tmp_path / 'hub'}/models--someone--vit-fer-not-cached" in text
    assert "models.vitfer.options.model" in text and "preprocessor_config.json" in text


def test_image_classifier_refuses_labels_the_seed_cannot_map(tmp_path):
    folder = tiny_vit(tmp_path / "vit", labels=("LABEL_0", "happy"))
    with pytest.raises(FerModelError, match=r"'LABEL_0'.*'hf_fer,LABEL_0,<canonical emotion>'"):
        _model("vitfer", "image_classifier", model=str(folder))


def test_image_classifier_stores_the_full_probability_vector_in_batches(tmp_path):
    folder = tiny_vit(tmp_path / "vit")
    model = _model("vitfer", "image_classifier", model=str(folder), batch_size=2, device="cpu")
    ev = model.evaluate(face_records(tmp_path, 3), EvaluationContext())
    assert ev.label_set == "hf_fer" and len(ev.weights_sha256) == 64
    assert [a.image_id for a in ev.answers] == ["0.png", "1.png", "2.png"]
    for a in ev.answers:
        assert a.parse_status == "ok" and len(a.probabilities) == 7
        assert sum(a.probabilities.values()) == pytest.approx(1.0)
        assert a.predicted_label == max(a.probabilities, key=a.probabilities.get)


def test_hsemotion_va_variant_answers_emotion_valence_and_arousal(tmp_path):
    path = hsemotion_weights(tmp_path / "enet_b0_8_va_mtl.pt")
    ev = _model("hse", "hsemotion", path=str(path), device="cpu").evaluate(face_records(tmp_path, 2), EvaluationContext())
    assert [(a.step, a.step_name) for a in ev.answers] == [(1, "emotion"), (2, "valence"), (3, "arousal")] * 2
    assert set(ev.answers[0].probabilities) == set(LABELS_8)
    for a in ev.answers:
        if a.step > 1:
            assert 1 <= a.predicted_value <= 9 and a.value_mapping.startswith(MAPPING)
            assert va_value(a.raw_value)[0] == pytest.approx(a.predicted_value)


def test_hsemotion_pickled_module_needs_allow_pickle_and_a_wrong_variant_is_named(tmp_path):
    path = hsemotion_weights(tmp_path / "enet_b0_7.pt", whole_module=True)
    with pytest.raises(FerModelError, match="pickled model.*allow_pickle: true"):
        _model("hse", "hsemotion", path=str(path))
    ev = _model("hse", "hsemotion", path=str(path), allow_pickle=True).evaluate(face_records(tmp_path, 1), EvaluationContext())
    assert set(ev.answers[0].probabilities) == set(LABELS_7) and len(ev.answers) == 1
    with pytest.raises(FerModelError, match="does not fit tf_efficientnet_b0 with 8 outputs"):
        _model("hse", "hsemotion", path=str(path), variant="enet_b0_8", allow_pickle=True)
    with pytest.raises(FerModelError, match="does not exist; download it from https://github.com/HSE-asavchenko"):
        _model("hse", "hsemotion", path=str(tmp_path / "enet_b2_8.pt"))
