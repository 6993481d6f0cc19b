"""The dataset's preprocessing step (inference/preprocessing.py) on real London Set images: the
settings (config, the kinds' defaults), what the step writes and records, and a VLM served by
the loopback OpenAI server through `evaluate_slice`, which must receive exactly the recorded
bytes (nothing patched). A uniform grey image is the face detector's honest miss."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.config import ConfigError, parse_config
from inference.datasets.base import ImageRecord
from inference.datasets.manifest import inspect_image
from inference.frames import Discovery
from inference.pipeline import dataset_preprocessing
from inference.preprocessing import Preprocessor, centre_square, grow, resized, square_around, to_source_box
from inference.preprocessing_config import PreprocessingConfig
from inference.slice_rows import dataset_rows, evaluate_slice
from support.openai_server import OpenAIServer

LONDON = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "london_set"
FACES = ("001_03.jpg", "002_03.jpg")  # white women, front neutral: Haar finds both


def record(path: Path, image_id: str | None = None) -> ImageRecord:
    width, height, digest = inspect_image(path)
    return ImageRecord(image_id or path.name, path, digest, "neutral", None, "white", "female", None, width, height)


def grey(path: Path, size: int = 256) -> Path:
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bench(tmp_path: Path, datasets: dict, models: dict | None = None):
    raw = {"cache_dir": str(tmp_path / "cache"), "warehouse": str(tmp_path / "w.duckdb"), "datasets": datasets,
           "models": models or {"m": {"kind": "imported", "family": "fer", "version": "1", "options": {"files": {}}}}}
    return parse_config(raw, tmp_path / "benchmark.yaml")


# ----------------------------------------------------------------------------- settings

def test_settings_are_validated_where_written_and_kinds_bring_defaults(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets\.d\.preprocessing\.face_detector: .*'haar', 'mtcnn' or 'none'"):
        bench(tmp_path, {"d": {"kind": "manifest", "location": "m.csv", "preprocessing": {"face_detector": "dlib"}}})
    cfg = bench(tmp_path, {
        "cfd": {"kind": "chicago_face", "location": "cfd"},
        "cfd160": {"kind": "chicago_face", "location": "cfd", "preprocessing": {"size": 160, "face_detector": "haar"}},
        "plain": {"kind": "manifest", "location": "m.csv"},
    })
    assert dataset_preprocessing(cfg, cfg.datasets["cfd"]).declared() == {
        "crop": "square_center", "size": 224, "face_detector": "none", "face_margin": 0.0}  # Chhua et al.
    # a dataset's own setting replaces the kind's default whole
    assert dataset_preprocessing(cfg, cfg.datasets["cfd160"]).declared() == {
        "crop": "none", "size": 160, "face_detector": "haar", "face_margin": 0.0}
    assert not dataset_preprocessing(cfg, cfg.datasets["plain"]).changes_pixels


def test_geometry_helpers():
    assert grow((10, 20, 100, 50), 0.1, 115, 200) == (0, 15, 115, 60)  # clipped left and right
    assert centre_square((10, 0, 100, 60)) == (30, 0, 60, 60)
    assert square_around((100, 100, 60, 100), 512, 512) == (80, 100, 100, 100)  # the face is not cut
    assert square_around((0, 400, 60, 100), 512, 450) == (0, 350, 100, 100)  # shifted inside the image
    assert resized(300, 300, 224) == (224, 224) and resized(400, 200, 100) == (200, 100)
    rec = {"applied": True, "crop_box": [100, 50, 200, 200], "size_sent": [100, 100]}
    assert to_source_box((10, 10, 20, 30), rec) == (120, 70, 40, 60)


# ----------------------------------------------------------------------------- the step

def test_square_crop_and_resize_record_the_bytes_sent_and_are_cached(tmp_path):
    image = record(LONDON / "neutral_front" / FACES[0])
    step = Preprocessor(PreprocessingConfig(crop="square_center", size=224), tmp_path)
    first = step.prepare_one(image)
    data = first.sent.path.read_bytes()
    assert first.sent.image_id == image.image_id and first.sent.image_hash == image.image_hash
    assert first.record["sha256"] == sha(data) and first.record["n_bytes"] == len(data)
    assert first.record["format"] == "png" and first.record["size_sent"] == [224, 224]
    assert first.record["crop_box"] == [0, 0, 512, 512] and first.record["source_size"] == [512, 512]
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (224, 224) and im.mode == "RGB"
    again = Preprocessor(PreprocessingConfig(crop="square_center", size=224), tmp_path).prepare_one(image)
    assert again.record == first.record and again.sent.path == first.sent.path  # from the cache
    other = Preprocessor(PreprocessingConfig(crop="square_center", size=160), tmp_path).prepare_one(image)
    assert other.sent.path.parent.parent != first.sent.path.parent.parent  # other settings, other folder


def test_nothing_to_apply_sends_the_file_itself(tmp_path):
    image = record(LONDON / "neutral_front" / FACES[0])
    out = Preprocessor(PreprocessingConfig(), tmp_path).prepare_one(image)
    assert out.sent == image and out.record["applied"] is False
    assert out.record["sha256"] == image.image_hash and out.record["format"] == "jpeg"
    assert not (tmp_path / "preprocessed").exists()


def test_haar_crops_the_face_and_records_a_miss_without_guessing(tmp_path):
    spec = PreprocessingConfig(face_detector="haar", face_margin=0.1, crop="square_center", size=128)
    step = Preprocessor.build(spec, tmp_path, lambda p: tmp_path / p)
    face, blank = step.prepare([record(LONDON / "neutral_front" / FACES[0]), record(grey(tmp_path / "grey.png"))])
    x, y, w, h = face.record["face_box"]
    cx, cy, side, side_y = face.record["crop_box"]
    assert face.record["face_found"] and face.record["n_faces_detected"] >= 1
    assert side == side_y and cx <= x and cx + side >= x + w * 0.9  # a square around the face
    assert 0 <= cx and cx + side <= 512 and face.record["detector"]["name"] == "opencv_haar_cascade"
    assert face.record["size_sent"] == [128, 128]
    assert blank.sent is None and blank.record["face_found"] is False and blank.record["n_faces_detected"] == 0
    assert blank.record["sha256"] is None and blank.record["crop_box"] is None


# ----------------------------------------------------------------------------- through a VLM

@pytest.fixture
def manifest(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in FACES:
        shutil.copy(LONDON / "neutral_front" / name, folder / name)
    grey(folder / "grey.png")
    rows = ["image,emotion,race,gender", *(f"{n},neutral,white,female" for n in FACES), "grey.png,neutral,black,male"]
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def test_a_vlm_receives_exactly_the_recorded_preprocessed_bytes(tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-preprocessing")
    with OpenAIServer(default_text="happy") as server:
        cfg = bench(tmp_path, {"faces": {"kind": "manifest", "location": str(manifest),
                                         "preprocessing": {"face_detector": "haar", "crop": "square_center",
                                                           "size": 224}}},
                    {"vlm": {"kind": "openai", "version": "v1", "options": {
                        "model_id": "test-model", "base_url": server.base_url, "timeout_s": 5,
                        "protocol": {"name": "single"}}}})
        ds = cfg.datasets["faces"]
        images = dataset_rows(cfg, ds).images
        result = evaluate_slice(cfg, cfg.models["vlm"], ds, images, run_id="r1", discovery=Discovery())
        sent = [r.images[0] for r in server.generation_requests]
    answers = result.evaluation.answers
    assert [a.image_id for a in answers] == sorted(images["image_id"])  # image order, the miss included
    by_id = {a.image_id: a for a in answers}
    assert len(sent) == 2  # the grey image was never sent
    assert {sha(b) for b in sent} == {by_id[n].preprocessing["input"]["sha256"] for n in FACES}
    for data in sent:
        with Image.open(io.BytesIO(data)) as im:
            assert im.size == (224, 224) and im.format == "PNG"
    for name in FACES:
        answer = by_id[name]
        assert answer.parse_status == "ok" and answer.face_found is True
        assert answer.face_box == tuple(answer.preprocessing["input"]["face_box"])
        assert answer.image_hash != answer.preprocessing["input"]["sha256"]  # the dataset's key stays
    miss = by_id["grey.png"]
    assert miss.parse_status == "no_face" and miss.face_found is False and miss.predicted_label is None
    assert miss.protocol == answers[0].protocol and miss.step_name == "emotion"
    assert miss.preprocessing["input"]["face_detector"] == "haar"
    frame = result.rows.predictions
    assert set(frame["parse_status"]) == {"ok", "no_face"} and frame["preprocessing"].str.contains('"input"').all()
