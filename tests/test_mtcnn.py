"""The MTCNN port (inference/models/mtcnn.py) with random-initialised weights of the real
architecture: facenet-pytorch's state-dict names and shapes round-trip through the loader, a
missing file names the download, and the cascade runs end to end on a real London Set image
(thresholds at 0 so that random nets let boxes through; above 1 nothing passes, and the step then
records a miss instead of guessing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.datasets.base import ImageRecord
from inference.models.mtcnn import MtcnnDetector, MtcnnNets, MtcnnWeightsError, load_mtcnn
from inference.preprocessing import Preprocessor
from inference.preprocessing_config import PreprocessingConfig

LONDON_IMAGE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "london_set" / "neutral_front" / "001_03.jpg"
# facenet-pytorch 2.x data/{pnet,rnet,onet}.pt: (number of tensors, some names with their shapes),
# as read from the files themselves.
FACENET_KEYS = {
    "pnet": (13, {"conv1.weight": (10, 3, 3, 3), "prelu1.weight": (10,), "conv4_1.weight": (2, 32, 1, 1),
                  "conv4_2.bias": (4,)}),
    "rnet": (16, {"conv3.weight": (64, 48, 2, 2), "dense4.weight": (128, 576), "prelu4.weight": (128,),
                  "dense5_2.weight": (4, 128)}),
    "onet": (21, {"conv4.weight": (128, 64, 2, 2), "dense5.weight": (256, 1152), "dense6_3.weight": (10, 256),
                  "prelu5.weight": (256,)}),
}


def london_rgb(side: int = 160) -> np.ndarray:
    with Image.open(LONDON_IMAGE) as im:
        return np.asarray(im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR))


def test_state_dicts_round_trip_with_facenet_names_and_shapes(tmp_path):
    nets = MtcnnNets.random(seed=3)
    for name, (count, shapes) in FACENET_KEYS.items():
        state = getattr(nets, name).state_dict()
        assert len(state) == count
        assert {k: tuple(state[k].shape) for k in shapes} == shapes
        torch.save(state, tmp_path / f"{name}.pt")
    loaded = load_mtcnn(tmp_path)
    for name in FACENET_KEYS:
        for key, value in getattr(nets, name).state_dict().items():
            assert torch.equal(getattr(loaded, name).state_dict()[key], value), (name, key)
    assert len(loaded.weights_sha256) == 64


def test_missing_or_foreign_weights_name_the_download(tmp_path):
    with pytest.raises(MtcnnWeightsError) as missing:
        load_mtcnn(tmp_path, "datasets.cfd.preprocessing.mtcnn.weights")
    message = str(missing.value)
    assert "datasets.cfd.preprocessing.mtcnn.weights" in message and "pnet.pt, rnet.pt, onet.pt" in message
    assert "pip download facenet-pytorch==2.6.0 --no-deps" in message and "'facenet_pytorch/data/*.pt'" in message
    nets = MtcnnNets.random()
    torch.save(nets.onet.state_dict(), tmp_path / "pnet.pt")  # the wrong net under the right name
    torch.save(nets.rnet.state_dict(), tmp_path / "rnet.pt")
    torch.save(nets.onet.state_dict(), tmp_path / "onet.pt")
    with pytest.raises(MtcnnWeightsError, match=r"pnet\.pt is not facenet-pytorch's pnet\.pt state dict"):
        load_mtcnn(tmp_path)


def test_cascade_runs_end_to_end_on_a_london_image():
    rgb = london_rgb()
    open_gate = MtcnnDetector(MtcnnNets.random(), min_face_size=60, thresholds=(0.0, 0.0, 0.0))
    boxes, scores = open_gate.detect_scored(rgb)
    assert len(boxes) > 0 and boxes.shape == (len(scores), 4)
    assert ((scores >= 0) & (scores <= 1)).all()
    faces = open_gate.detect(rgb)
    assert faces and all(0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 160 and y + h <= 160
                         for x, y, w, h in faces)
    assert [w * h for _, _, w, h in faces] == sorted((w * h for _, _, w, h in faces), reverse=True)
    closed = MtcnnDetector(MtcnnNets.random(), min_face_size=60, thresholds=(1.1, 1.1, 1.1))
    assert closed.detect(rgb) == []
    assert open_gate.params["weights_sha256"] is None and open_gate.params["thresholds"] == [0.0, 0.0, 0.0]


def test_the_step_crops_mtcnn_faces_and_records_misses(tmp_path):
    path = tmp_path / "london.png"
    Image.fromarray(london_rgb()).save(path)
    image = ImageRecord("london.png", path, "h" * 64, "neutral", None, "white", "female", None, 160, 160)
    spec = PreprocessingConfig(face_detector="mtcnn", crop="square_center", size=64)
    found = Preprocessor(spec, tmp_path / "a", MtcnnDetector(MtcnnNets.random(), 60, (0.0, 0.0, 0.0))).prepare_one(image)
    assert found.sent is not None and found.record["face_found"] is True
    assert found.record["detector"]["name"] == "mtcnn" and found.record["size_sent"] == [64, 64]
    missed = Preprocessor(spec, tmp_path / "b", MtcnnDetector(MtcnnNets.random(), 60, (1.1, 1.1, 1.1))).prepare_one(image)
    assert missed.sent is None and missed.record["face_found"] is False and missed.record["n_faces_detected"] == 0
