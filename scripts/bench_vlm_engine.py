"""Throughput of the VLM engine + OpenAI-compatible backend against the loopback server.

    .venv/bin/python scripts/bench_vlm_engine.py [--latency 0.2] [--rounds 30] [--in-flight 4 16 64 256]

The loopback OpenAI-compatible server (tests/support/openai_server.py) answers every request
after a fixed latency; it runs in its own process so the client's event loop is measured, not
the server's threads. For each concurrency level the engine (real `openai` client, no rate
limits, no cache) sends `rounds * in_flight` requests (after one warm-up round); the ideal rate
is in_flight / latency, and the ratio rps / ideal is the efficiency. Target: >= 0.9 at 64.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]

from inference.vlm.engine import Engine, run_all  # noqa: E402
from inference.vlm.openai_backend import OpenAIChatBackend  # noqa: E402
from inference.vlm.types import ChatRequest, GenerationParams, Turn  # noqa: E402

IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 16 + b"\xff\xd9"  # ~4 kB, as a small face crop


def _serve(latency_s: float, url_queue, stop) -> None:
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]
    from support.openai_server import OpenAIServer

    with OpenAIServer(latency_s=latency_s, default_text="happiness") as server:
        url_queue.put(server.base_url)
        stop.wait()


def _request(i: int) -> ChatRequest:
    return ChatRequest(
        turns=(Turn("system", "Answer with one emotion word."),
               Turn("user", f"Image {i}: which emotion does this face show?", with_image=True)),
        image_bytes=IMAGE, image_mime="image/jpeg", params=GenerationParams(max_tokens=8),
    )


async def _measure(backend: OpenAIChatBackend, in_flight: int, rounds: int) -> tuple[float, float, int]:
    engine = Engine(backend, max_in_flight=in_flight, max_retries=0, timeout_s=30)
    await run_all([engine.complete(_request(i)) for i in range(in_flight)])  # warm-up: connections
    n = in_flight * rounds
    started, cpu = time.perf_counter(), time.process_time()
    results = await run_all([engine.complete(_request(i)) for i in range(n)])
    elapsed = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu) * 1000 / n
    errors = sum(isinstance(r, BaseException) for r in results)
    return n / elapsed, cpu_ms, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency in seconds (0.2)")
    parser.add_argument("--rounds", type=int, default=30,
                        help="requests per level = rounds * in_flight (30: steady state, not the first wave)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[4, 16, 64, 256])
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    url_queue, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.latency, url_queue, stop), daemon=True)
    server.start()
    try:
        base_url = url_queue.get(timeout=60)
        os.environ.setdefault("BENCH_OPENAI_KEY", "sk-bench-not-a-secret")
        backend = OpenAIChatBackend("bench-model", base_url=base_url, api_key_env="BENCH_OPENAI_KEY", timeout_s=30)
        rows = []
        for in_flight in args.in_flight:
            rps, cpu_ms, errors = asyncio.run(_measure(backend, in_flight, args.rounds))
            ideal = in_flight / args.latency
            rows.append((in_flight, in_flight * args.rounds, rps, ideal, rps / ideal, cpu_ms, errors))
    finally:
        stop.set()
        server.join(timeout=10)

    print(f"\nVLM engine throughput, loopback OpenAI-compatible server, fixed latency {args.latency * 1000:.0f} ms, "
          f"{os.cpu_count()} CPUs\n")
    header = f"{'in flight':>9} {'requests':>8} {'req/s':>8} {'ideal req/s':>11} {'ratio':>6} {'client CPU ms/req':>17} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for in_flight, n, rps, ideal, ratio, cpu_ms, errors in rows:
        print(f"{in_flight:>9} {n:>8} {rps:>8.1f} {ideal:>11.1f} {ratio:>6.3f} {cpu_ms:>17.2f} {errors:>6}")
    target = [r for r in rows if r[0] == 64]
    if target:
        verdict = "meets" if target[0][4] >= 0.9 else "misses"
        print(f"\nratio at 64 in flight: {target[0][4]:.3f} ({verdict} the >= 0.9 target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
