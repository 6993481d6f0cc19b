"""The CLIP adapter (kind `clip`) end to end with a randomly initialised tiny open_clip model.

A tiny architecture is registered with open_clip at test time (`open_clip.add_model_config`),
a random model of it is saved as a local checkpoint and loaded through `pretrained: <path>`
(+ `sha256:`), the route a user's own checkpoint takes. It runs on real London Set images
(30 identities x neutral/smiling). Random weights say nothing about emotions, so accuracy is
tested on synthetic embeddings with a known structure instead.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from inference.config import ModelConfig
from inference.datasets.labels import load_label_map
from inference.datasets.london import load_london_set
from inference.models.clip import (
    CANONICAL_7,
    DEFAULT_TEMPLATES,
    ClipModel,
    ClipOptionsError,
    ClipProbeError,
    ClipWeightsError,
    linear_probe,
    prompt_hash,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
N_IDENTITIES = 30
TINY = "fer-test-tiny-clip"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    # the text tower keeps CLIP's BPE vocabulary and context so the stock tokenizer works
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
FAST_CS = [0.1, 1.0, 10.0, 100.0]

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"needs the London Set at {LONDON}")


def _cfg(options: dict, name: str = "tiny_clip", version: str = "tiny-random-0") -> ModelConfig:
    # model_construct: `clip` may not yet be a kind the config schema accepts
    return ModelConfig.model_construct(name=name, kind="clip", version=version, datasets=None, options=options)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("open_clip_tiny")
    config = folder / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CFG), encoding="utf-8")
    open_clip.add_model_config(config)
    torch.manual_seed(1234)
    model = open_clip.create_model(TINY)
    checkpoint = folder / "tiny_clip_random.pt"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint, hashlib.sha256(checkpoint.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def london_pairs():
    """30 identities x (neutral, smiling) of the London Set, with canonical true labels."""
    images = load_london_set(LONDON).images
    identities = sorted({r.identity for r in images})[:N_IDENTITIES]
    chosen = [r for r in images if r.identity in identities]
    label_map = load_label_map()
    truth = [label_map.canonical("london_set", r.source_label) for r in chosen]
    assert len(chosen) == 2 * N_IDENTITIES and set(truth) == {"neutral", "happy"}
    return chosen, truth


@pytest.fixture(scope="module")
def zero_shot_model(tiny_checkpoint, tmp_path_factory) -> ClipModel:
    checkpoint, digest = tiny_checkpoint
    options = {"architecture": TINY, "pretrained": str(checkpoint), "sha256": digest, "device": "cpu",
               "batch_size": 16, "mode": "zero_shot"}
    return ClipModel.from_config(_cfg(options), tmp_path_factory.mktemp("cache"))


def test_zero_shot_answers_are_distributions(zero_shot_model, tiny_checkpoint, london_pairs):
    images, _truth = london_pairs
    model = zero_shot_model
    answers = model.predict(images)
    assert [a.image_id for a in answers] == [r.image_id for r in images]
    assert model.label_set == "canonical"
    assert model.weights_sha256 == tiny_checkpoint[1]  # the checkpoint file that was loaded
    expected_hash = prompt_hash(DEFAULT_TEMPLATES, CANONICAL_7, model.label_words)
    for a in answers:
        assert a.parse_status == "ok" and a.protocol == "clip_zero_shot"
        assert list(a.probabilities) == list(CANONICAL_7)
        values = np.array(list(a.probabilities.values()))
        assert (values >= 0).all() and values.sum() == pytest.approx(1.0, abs=1e-9)
        assert a.predicted_label == max(a.probabilities, key=a.probabilities.get)
        assert a.prompt_hash == expected_hash
        assert a.preprocessing["logit_scale"] == 100.0
    # the hash changes with the prompts
    assert prompt_hash(["a {} face"], CANONICAL_7, model.label_words) != expected_hash
    # embeddings for the warehouse: one L2-normalised row per image
    emb = model.embeddings
    assert list(emb.columns) == ["image_id", "image_hash", "embedding"]
    assert list(emb["image_hash"]) == [r.image_hash for r in images]
    vectors = np.array(emb["embedding"].tolist())
    assert vectors.shape == (len(images), TINY_CFG["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the zero-shot vector is softmax(100 * cosine) with the ensembled text embeddings
    logits = 100.0 * vectors[:3] @ model.text_features().T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, [list(a.probabilities.values()) for a in answers[:3]], atol=1e-5)


def test_batched_embeddings_equal_one_at_a_time(zero_shot_model, london_pairs):
    images = london_pairs[0][:20]
    batched = zero_shot_model.embed(images, batch_size=8)
    single = np.concatenate([zero_shot_model.embed([r], batch_size=1) for r in images])
    assert batched.shape == single.shape == (20, TINY_CFG["embed_dim"])
    assert np.abs(batched - single).max() < 1e-5


def test_linear_probe_folds_never_split_an_identity(tiny_checkpoint, london_pairs, tmp_path):
    images, truth = london_pairs
    checkpoint, digest = tiny_checkpoint
    options = {"architecture": TINY, "pretrained": str(checkpoint), "sha256": digest, "device": "cpu",
               "mode": "linear_probe", "folds": 5, "inner_folds": 3, "Cs": FAST_CS, "seed": 7}
    model = ClipModel.from_config(_cfg(options), tmp_path)
    answers = model.predict(images, true_labels=truth)
    # exactly one out-of-fold answer per image, in order
    assert [a.image_id for a in answers] == [r.image_id for r in images]
    folds = [a.preprocessing["fold"] for a in answers]
    assert set(folds) == set(range(5))
    fold_of_identity: dict[str, set[int]] = defaultdict(set)
    for record, fold in zip(images, folds):
        fold_of_identity[record.identity].add(fold)
    assert all(len(f) == 1 for f in fold_of_identity.values()), "an identity straddles folds"
    per_fold_c: dict[int, set[float]] = defaultdict(set)
    for a in answers:
        assert a.protocol == "clip_linear_probe" and a.parse_status == "ok"
        assert a.preprocessing["C"] in FAST_CS  # chosen by the inner CV
        per_fold_c[a.preprocessing["fold"]].add(a.preprocessing["C"])
        # trained on every image outside its own fold, never on its own
        assert a.preprocessing["n_train"] == len(images) - folds.count(a.preprocessing["fold"])
        assert list(a.probabilities) == list(CANONICAL_7)
        assert sum(a.probabilities.values()) == pytest.approx(1.0)
        assert {k for k, v in a.probabilities.items() if v > 0} <= {"neutral", "happy"}
        assert a.predicted_label in ("neutral", "happy")
    assert all(len(c) == 1 for c in per_fold_c.values())  # one C per fold model
    assert [f["fold"] for f in model.probe_result.folds] == list(range(5))
    assert sum(f["n_test"] for f in model.probe_result.folds) == len(images)
    assert len(model.embeddings) == len(images)


def test_linear_probe_needs_labels_and_enough_identities(tiny_checkpoint, london_pairs, tmp_path):
    images, truth = london_pairs
    checkpoint, _ = tiny_checkpoint
    options = {"architecture": TINY, "pretrained": str(checkpoint), "device": "cpu",
               "mode": "linear_probe", "Cs": FAST_CS}
    model = ClipModel.from_config(_cfg(options), tmp_path)
    with pytest.raises(ClipProbeError, match="needs true_labels"):
        model.predict(images)
    with pytest.raises(ClipProbeError, match="outside labels"):
        model.predict(images, true_labels=["smiling"] * len(images))
    # 4 identities cannot fill 5 identity-grouped folds
    with pytest.raises(ClipProbeError, match=r"'happy' \(4 identities\).*folds=5"):
        model.predict(images[:8], true_labels=truth[:8])


def _synthetic(rng: np.random.Generator, n_identities: int = 30, n_classes: int = 3, dim: int = 16):
    """Every identity shows every class once: x = class direction + identity offset + noise."""
    means = rng.normal(size=(n_classes, dim)) * 2.0
    X, y, groups = [], [], []
    for person in range(n_identities):
        offset = rng.normal(size=dim)
        for c in range(n_classes):
            X.append(means[c] + offset + 0.5 * rng.normal(size=dim))
            y.append(f"class{c}")
            groups.append(f"p{person}")
    X = np.asarray(X)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.asarray(y), np.asarray(groups)


def test_probe_learns_a_separable_structure_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    X, y, groups = _synthetic(rng)
    result = linear_probe(X, y, groups, folds=5, inner_folds=3, Cs=FAST_CS, seed=0)
    predicted = np.asarray(result.classes)[result.probabilities.argmax(axis=1)]
    assert (predicted == y).mean() > 0.9
    assert np.isin(result.C, FAST_CS).all()
    # control: the same embeddings with labels shuffled are read at about chance (1/3)
    shuffled = rng.permutation(y)
    control = linear_probe(X, shuffled, groups, folds=5, inner_folds=3, Cs=FAST_CS, seed=0)
    accuracy = (np.asarray(control.classes)[control.probabilities.argmax(axis=1)] == shuffled).mean()
    assert accuracy < 0.55
    # images without identity are their own group (every image its own fold member)
    no_id = linear_probe(X, y, [f"img{i}" for i in range(len(y))], folds=5, inner_folds=3, Cs=FAST_CS)
    assert sorted(np.bincount(no_id.fold)) == [18] * 5


def test_offline_missing_weights_name_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    options = {"architecture": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "device": "cpu"}
    with pytest.raises(ClipWeightsError) as info:
        ClipModel.from_config(_cfg(options), tmp_path / "cache")
    message = str(info.value)
    for needle in ("ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                   str(tmp_path / "hf_empty"), "pretrained: /path/to/file"):
        assert needle in message
    options["pretrained"] = "openai"
    with pytest.raises(ClipWeightsError, match=r"openaipublic.*ViT-B-32\.pt"):
        ClipModel.from_config(_cfg(options), tmp_path / "cache")
    options["pretrained"] = str(tmp_path / "missing.safetensors")
    with pytest.raises(ClipWeightsError, match="does not exist"):
        ClipModel.from_config(_cfg(options), tmp_path / "cache")


def test_options_and_checksums_are_checked(tiny_checkpoint, tmp_path):
    checkpoint, digest = tiny_checkpoint
    base = {"architecture": TINY, "pretrained": str(checkpoint), "device": "cpu"}
    with pytest.raises(ClipOptionsError, match="unknown key"):
        ClipModel.from_config(_cfg({**base, "temperature": 1}), tmp_path)
    with pytest.raises(ClipOptionsError, match="not canonical"):
        ClipModel.from_config(_cfg({**base, "labels": ["happy", "smiling"]}), tmp_path)
    with pytest.raises(ClipOptionsError, match="exactly one"):
        ClipModel.from_config(_cfg({**base, "templates": ["a face"]}), tmp_path)
    with pytest.raises(ClipWeightsError, match="does not match"):
        ClipModel.from_config(_cfg({**base, "sha256": "0" * 64}), tmp_path)
    # a relative checkpoint path and a model_config file are resolved like other config paths
    config = tmp_path / "my_arch.json"
    config.write_text(json.dumps(TINY_CFG), encoding="utf-8")
    relative = {"architecture": "fer-test-tiny-from-option", "model_config": "my_arch.json",
                "pretrained": checkpoint.name, "device": "cpu"}
    built = ClipModel.from_config(_cfg(relative), tmp_path, resolve=lambda p: checkpoint.parent / p
                                  if p.endswith(".pt") else tmp_path / p)
    assert built.weights_sha256 == digest and built.weights_path == checkpoint
    assert not built.needs_true_labels
    # random init (tests/benchmarks): the weights checksum is that of the seeded initial state
    random_a = ClipModel.from_config(_cfg({**base, "pretrained": "random", "seed": 3}), tmp_path)
    random_b = ClipModel.from_config(_cfg({**base, "pretrained": "random", "seed": 3}), tmp_path)
    assert random_a.weights_sha256 == random_b.weights_sha256 != digest
