"""Batched vs one-at-a-time throughput of the transformers backend on the tiny test models.

    .venv/bin/python scripts/bench_local_vlm.py [--requests 64] [--batch 8] [--max-tokens 8]
                                                [--families paligemma gemma3 mllama qwen2_vl]

Builds the tiny random-weight models of `tests/support/tiny_vlms.py` (a few hundred KB each)
in a temporary directory and, per family, answers the same `--requests` greedy requests (a
London Set face when ../shared has it, else a synthetic image; prompts of varying length)
twice: all at once through a backend with max_batch_size=--batch (micro-batched: one generate
per batch), and one after another with max_batch_size=1. Reports requests/s of both, the
speed-up, the generate calls and whether the answers agree. The models are tiny, so the ratio
measures per-call overhead (preprocessing, generate set-up, Python) saved by batching, not
what a 3B-parameter model gains on a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT)]

from inference.vlm.transformers_backend import TransformersBackend
from inference.vlm.types import ChatRequest, GenerationParams, Turn
from tests.support.tiny_vlms import FAMILIES, build_tiny_vlm

QUESTIONS = [
    ("What is the facial expression in this image? Choose one from: happy, sad, angry, fear, "
     "disgust, neutral. Answer with a single word only."),
    "happy or sad?", "What expression?", "Rate from 1 to 9 where 1 is very unpleasant",
    "emotion?", "Classify the image into one of the eight expressions.",
]


def _image() -> bytes:
    london = REPO_ROOT.parent / "shared" / "datasets" / "london_set"
    found = sorted(london.glob("*_front/*.jpg"))
    if found:
        return found[0].read_bytes()
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (180, 140, 120)).save(buf, "JPEG")
    return buf.getvalue()


async def _together(backend, requests):
    return await asyncio.gather(*(backend.complete(r) for r in requests))


async def _one_by_one(backend, requests):
    return [await backend.complete(r) for r in requests]


def bench(model_dir: Path, requests: list[ChatRequest], batch: int) -> dict:
    batched = TransformersBackend(str(model_dir), max_batch_size=batch, batch_wait_ms=20)
    single = TransformersBackend(str(model_dir), max_batch_size=1, batch_wait_ms=0)
    asyncio.run(_together(batched, requests[:batch]))  # warm-up
    asyncio.run(_one_by_one(single, requests[:2]))
    batched.generate_calls, single.generate_calls = 0, 0
    t0 = time.perf_counter()
    got = asyncio.run(_together(batched, requests))
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = asyncio.run(_one_by_one(single, requests))
    t_single = time.perf_counter() - t0
    batched.close()
    single.close()
    return {
        "batched_rps": len(requests) / t_batched, "single_rps": len(requests) / t_single,
        "speedup": t_single / t_batched, "calls": batched.generate_calls,
        "agree": sum(a.text == b.text for a, b in zip(got, alone)),
        "out_tokens": sum(r.output_tokens for r in got),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = ap.parse_args()
    import torch

    image = _image()
    requests = [ChatRequest(turns=(Turn("user", QUESTIONS[i % len(QUESTIONS)], with_image=True),),
                            image_bytes=image, image_mime="image/jpeg",
                            params=GenerationParams(max_tokens=args.max_tokens))
                for i in range(args.requests)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; {args.requests} greedy requests, "
          f"max_tokens={args.max_tokens}, max_batch_size={args.batch}")
    print(f"{'family':<10} {'batched req/s':>13} {'single req/s':>12} {'speed-up':>8} "
          f"{'generate calls':>14} {'same answers':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            model_dir = build_tiny_vlm(family, Path(tmp) / family)
            r = bench(model_dir, requests, args.batch)
            print(f"{family:<10} {r['batched_rps']:>13.1f} {r['single_rps']:>12.1f} "
                  f"{r['speedup']:>7.2f}x {r['calls']:>14} "
                  f"{r['agree']:>5}/{args.requests}")


if __name__ == "__main__":
    main()
