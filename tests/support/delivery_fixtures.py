"""Shared pieces of the delivery tests (tests/test_vlm_delivery.py, tests/test_vlm_batch.py):
real London Set images, the tiered loopback OpenAI server answering a fixed label per image and
sample, the openai adapter under test, batch rounds run until the slice is complete, and the
answer columns of raw.predictions that two runs with the same answers share."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from inference.config import ModelConfig
from inference.datasets import load_london_set
from inference.frames import predictions_frame
from inference.models.vlm import VLMAdapter
from inference.models.vlm_batch import BatchPending
from support.batch_servers import TieredOpenAIServer

REPO_ROOT = Path(__file__).resolve().parents[2]
LONDON = REPO_ROOT.parent / "shared" / "datasets" / "london_set"
KEY = "sk-test-delivery-SECRET-0123456789"
N_IMAGES = 4
LABELS = ("happy", "sad", "angry", "fear", "surprise", "disgust", "neutral")
SLICE = {"model": "gpt", "model_version": "v1", "dataset": "faces"}
# the answer columns of raw.predictions (run_id, created_at and latency differ between runs)
ANSWER_COLUMNS = ["image_id", "protocol", "step", "sample_index", "attempt", "prompt_hash", "raw_text",
                  "parse_status", "predicted_label", "input_tokens", "output_tokens"]


@pytest.fixture(scope="module")
def images():
    load = load_london_set(LONDON)
    return sorted(load.images, key=lambda i: i.image_id)[:N_IMAGES]


def label_of(recorded) -> str:
    """A fixed answer per image and sample (the loopback provider's 'model')."""
    seed = (recorded.body or {}).get("seed")
    digest = hashlib.sha256((recorded.images[0] if recorded.images else b"") + str(seed).encode()).digest()
    return LABELS[digest[0] % len(LABELS)]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with TieredOpenAIServer(models=("test-model",)) as srv:
        srv.answer_fn = label_of
        yield srv


def adapter(server, tmp_path: Path, **options) -> VLMAdapter:
    options = {"model_id": "test-model", "base_url": server.base_url, "timeout_s": 5,
               "protocol": {"name": "maj_at_k", "k": 3, "temperature": 1, "seed": 7, "max_tokens": 16},
               "price_per_million_tokens": {"input": 2.5, "output": 10}, **options}
    return VLMAdapter(ModelConfig(name="gpt", kind="openai", version="v1", options=options), tmp_path / "cache")


def rounds(model: VLMAdapter, images, ledger, limit: int = 12) -> tuple[list, int]:
    """Batch rounds until the slice is complete (what the sensor's runs do): (answers, rounds)."""
    for n in range(1, limit + 1):
        try:
            return model.predict(images, batch_ledger=ledger), n
        except BatchPending:
            continue
    raise AssertionError(f"not complete after {limit} rounds")


def answer_rows(answers) -> pd.DataFrame:
    frame = predictions_frame(answers, run_id="r", model="gpt", model_version="v1", model_kind="openai",
                              dataset="faces", label_set="canonical")
    return frame[ANSWER_COLUMNS].sort_values(ANSWER_COLUMNS[:5]).reset_index(drop=True)
