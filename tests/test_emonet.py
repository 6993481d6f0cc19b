"""Kind `emonet`: our EmoNet has the published state dicts' layout (key names and shapes), a file
saved the published way loads into it strictly and round-trips, and the kind answers classes,
valence and arousal on [1, 9]; missing or mismatched weights are named with the fix.
Random-initialised weights only (the published ones are CC BY-NC-ND and never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fer_baseline_support import emonet_weights, face_records
from inference.config import ModelConfig
from inference.datasets.labels import load_label_map
from inference.models import EvaluationContext, build_model
from inference.models.emonet import LABELS_8, load_emonet
from inference.models.emonet_net import EmoNet
from inference.models.fer_baselines import VA_MAPPING, FerModelError, va_value

# Facts of the published emonet_8.pth / emonet_5.pth layout (counted from the official model
# definition): 682 entries, 13,995,282 parameters and running statistics for the 8-class model.
PUBLISHED_SHAPES = {
    "conv1.weight": (64, 3, 7, 7), "conv1.bias": (64,), "bn1.running_var": (64,),
    "conv2.downsample.2.weight": (128, 64, 1, 1), "m0.b2_plus_1.conv3.weight": (64, 64, 3, 3),
    "m1.b1_4.conv1.weight": (128, 256, 3, 3), "l1.weight": (68, 256, 1, 1), "al0.weight": (256, 68, 1, 1),
    "bl0.weight": (256, 256, 1, 1), "conv1x1_input_emo_2.weight": (256, 768, 1, 1),
    "emo_net_2.6.bn1.num_batches_tracked": (), "emo_fc_2.1.running_mean": (128,), "emo_fc_2.3.weight": (10, 128),
}


def _model(path: Path, **options):
    options = {"path": str(path), "device": "cpu", **options}
    return build_model(ModelConfig(name="emo", kind="emonet", version="v1", options=options), Path("unused-cache"))


def test_our_emonet_has_the_published_state_dict_layout():
    state = EmoNet(n_classes=8).state_dict()
    assert len(state) == 682
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) == 13_995_282
    assert {k: tuple(state[k].shape) for k in PUBLISHED_SHAPES} == PUBLISHED_SHAPES
    assert tuple(EmoNet(n_classes=5).state_dict()["emo_fc_2.3.weight"].shape) == (7, 128)
    assert [load_label_map().canonical("emonet", x) for x in LABELS_8] == [
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]


def test_a_published_style_file_round_trips_and_the_kind_answers_valence_and_arousal(tmp_path):
    path = emonet_weights(tmp_path / "emonet_5.pth", classes=5)
    saved = torch.load(path, weights_only=True)
    loaded = load_emonet(path, 5, "w").state_dict()
    assert all(torch.equal(saved["module." + k], v) for k, v in loaded.items()) and len(saved) == len(loaded)

    ev = _model(path).evaluate(face_records(tmp_path, 1), EvaluationContext())  # classes from the file name
    assert ev.label_set == "emonet" and len(ev.weights_sha256) == 64
    assert [(a.step, a.step_name) for a in ev.answers] == [(1, "emotion"), (2, "valence"), (3, "arousal")]
    assert list(ev.answers[0].probabilities) == list(LABELS_8[:5])
    assert ev.answers[0].preprocessing["resize"] == 256
    for a in ev.answers[1:3]:
        assert 1 <= a.predicted_value <= 9 and a.value_mapping.startswith(VA_MAPPING)
        assert va_value(a.raw_value)[0] == pytest.approx(a.predicted_value)


def test_missing_or_mismatched_weights_say_what_to_download_and_where(tmp_path):
    with pytest.raises(FerModelError, match=r"emo\.options\.path: .*emonet_8\.pth does not exist; download "
                                            r"emonet_8\.pth .*github\.com/face-analysis/emonet.*CC BY-NC-ND"):
        _model(tmp_path / "emonet_8.pth")
    five = emonet_weights(tmp_path / "five.pth", classes=5)
    with pytest.raises(FerModelError, match="does not fit EmoNet with 8 classes.*classes"):
        _model(five, classes=8)
    other = tmp_path / "other.pth"  # another network's state dict (an EfficientNet's first keys)
    torch.save({"conv_stem.weight": torch.zeros(32, 3, 3, 3), "bn1.weight": torch.ones(32)}, other)
    with pytest.raises(FerModelError, match=r"not an EmoNet state dict: missing \['conv1.weight'.*"
                                            r"unexpected \['conv_stem.weight'\]"):
        _model(other)
    pickled = tmp_path / "emonet_5_module.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole module: never unpickled
    with pytest.raises(FerModelError, match="is a pickled model, not a state dict; this kind loads state dicts only"):
        _model(pickled)
