"""Batched vs one-at-a-time CPU throughput of the local model paths (target: batched >= 5x).

    .venv/bin/python scripts/bench_local_batching.py [--n 64] [--batch-size 32] [--repeats 2]
        [--skip-fer] [--skip-clip] [--skip-vit-b32] [--n-vit 32] [--threads N]

(a) FER: `XceptionFER` with the big-Xception weights from ../shared/models/face_classification on
    London Set images: the model forward alone (preprocessed 64x64 faces, one batch vs one call per
    face) and the whole `predict` (decode + Haar face detection + crop + forward). Also measured,
    as a *proposal* for the adapter (not implemented in xception.py): detection run in a thread
    pool (OpenCV releases the GIL in imdecode/detectMultiScale) before the batched forward.
(b) CLIP: `ClipModel` with a randomly initialised tiny open_clip model and a randomly initialised
    ViT-B-32-sized one: the image-tower forward alone (preprocessed tensors) and the whole
    `embed` (decode + open_clip preprocessing + forward).

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
BIG_XCEPTION = SHARED / "models" / "face_classification" / "fer2013_big_XCEPTION.54-0.66.hdf5"
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


def bench_fer(images, batch_size: int, repeats: int, workers: int) -> None:
    import numpy as np

    from inference.models.faces import FaceDetector, preprocess_face
    from inference.models.xception import XceptionFER

    if not BIG_XCEPTION.is_file():
        print(f"(a) FER skipped: {BIG_XCEPTION} not found")
        return
    model = XceptionFER(BIG_XCEPTION, face_detection="haar", batch_size=batch_size)
    print(f"(a) FER big-Xception ({BIG_XCEPTION.name}), {len(images)} London Set images, batch {batch_size}")
    faces = []
    start = time.perf_counter()
    for r in images:
        array, _box, _info = preprocess_face(r.path, model.detector, size=model.input_size, offsets=model.offsets)
        if array is not None:
            faces.append(array)
    detect_s = time.perf_counter() - start
    x = np.stack(faces).astype(np.float32)
    n = len(x)

    def batched_forward():
        for lo in range(0, n, batch_size):
            model.predict_arrays(x[lo : lo + batch_size])

    def single_forward():
        for i in range(n):
            model.predict_arrays(x[i : i + 1])

    report("fer_big_xception", "forward alone", n, best_time(batched_forward, repeats), best_time(single_forward, repeats))
    whole_b = best_time(lambda: model.predict(images, batch_size=batch_size), repeats)
    whole_s = best_time(lambda: [model.predict([r], batch_size=1) for r in images], repeats)
    report("fer_big_xception", "whole predict (incl. Haar detection)", len(images), whole_b, whole_s)
    print(f"      decode+detect+crop alone: {len(images) / detect_s:.1f} img/s "
          f"({detect_s / len(images) * 1000:.1f} ms/img) = {detect_s / whole_b * 100:.0f}% of the batched predict")

    # Proposal (not in the adapter): detection in a thread pool, one detector per thread.
    import threading

    local = threading.local()

    def detector() -> FaceDetector:
        if not hasattr(local, "det"):
            local.det = FaceDetector()
        return local.det

    def prep(r):
        return preprocess_face(r.path, detector(), size=model.input_size, offsets=model.offsets)

    def threaded_predict():
        with ThreadPoolExecutor(workers) as pool:
            prepared = list(pool.map(prep, images))
        arrays = [p[0] for p in prepared if p[0] is not None]
        batch = np.stack(arrays)
        for lo in range(0, len(batch), batch_size):
            model.predict_arrays(batch[lo : lo + batch_size])

    def threaded_detection_only():
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(prep, images))

    serial_t = best_time(lambda: [prep(r) for r in images], repeats)
    threaded_t = best_time(threaded_detection_only, repeats)
    print(f"      decode+detect+crop: serial {len(images) / serial_t:.1f} img/s, {workers} threads "
          f"{len(images) / threaded_t:.1f} img/s ({serial_t / threaded_t:.2f}x)")
    report("fer_big_xception", f"PROPOSAL threaded detection x{workers}", len(images),
           best_time(threaded_predict, repeats), whole_s, "(vs adapter one-at-a-time)")

    # Proposal: detection on a half-size grey image, boxes scaled back (changes the boxes slightly)
    import cv2

    from inference.models.faces import read_gray

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
    print(f"      detectMultiScale alone (decoded grey): full res {len(grays) / full_t:.1f} img/s, "
          f"half res {len(grays) / half_t:.1f} img/s ({full_t / half_t:.1f}x), mean box IoU {np.mean(ious):.3f}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="images (London Set, first identities)")
    parser.add_argument("--n-vit", type=int, default=32, help="images for the ViT-B-32-sized model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="threads for the detection proposal")
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
