"""The API runner at a provider's limit: the engine beside a naive loop and an inspect_ai-style
fixed policy, in ONE run, against a loopback OpenAI-compatible server in its own process.

    .venv/bin/python scripts/bench_api_runner.py                 # the engine, every default scenario x size
    .venv/bin/python scripts/bench_api_runner.py --clients naive inspect engine --scenarios 429@256
    .venv/bin/python scripts/bench_api_runner.py --profile       # CPU profile of the engine, 256 in flight
    .venv/bin/python scripts/bench_api_runner.py --profile --engine-transport sdk-httpx   # the path before

Every client sends the same ~11 kB 224-px JPEG (a London Set face, resized) with a unique prompt
per request; the server (tests/support/openai_server.py, 1 s latency) counts the answers it
sent per prompt, so lost answers (never answered) and duplicates (answered twice) are
server-counted. Scenarios:
  clean@64, clean@256   no faults, 64 / 256 in flight          bound = in_flight / latency
  429@64, 429@256       10 % random 429 + Retry-After: 1         bound = the same
  limit50@256           the server admits 50 req/s (a bucket of one second's requests; 429 +
                        Retry-After: 1 past it), 256 allowed in flight, no rpm configured,
                        no budget headers                          bound = 50 req/s
  limit50h@256          the same, the server sending OpenAI's x-ratelimit-* budget headers
  limit100@256          the server admits 100 req/s (bursts of 20), 256 allowed
Each scenario runs at every size of --sizes (default 1,000 and 4,096 requests: a researcher's
slice is mostly its start) with a fresh engine per measured phase (its limiter starts cold, as
a user's run does; only the warm-up's connections are kept). Reported: answers/s over the
bound, calls the server refused (429) per answer, unanswered requests and requests answered
twice (server-counted), and with --window-dir the engine's window over time.
Clients:
  naive    asyncio.Semaphore(in_flight) over the official AsyncOpenAI (its default 2 retries,
           which honour Retry-After), chat.completions.create, base64 per request
  inspect  inspect_ai's fixed max_connections policy: the slot held across tenacity retries,
           wait_exponential_jitter(initial=3, max=1800, jitter=3), SDK retries off
  engine   inference.vlm.engine.Engine over OpenAIChatBackend with a ResponseCache (its default
           "direct" transport; --engine-transport sdk / sdk-httpx for the SDK end to end)
The ratio printed is answers/s over the bound; numbers are for notes, never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]

FACE = REPO_ROOT.parent / "shared" / "datasets" / "london_set" / "neutral_front" / "001_03.jpg"
SYSTEM = "Answer with one emotion word."
SCENARIOS = {  # name: (in_flight, provider behaviour, bound req/s or None = in_flight / latency)
    "clean@64": (64, {}, None),
    "clean@256": (256, {}, None),
    "429@64": (64, {"p_rate_limited": 0.10, "retry_after": "1"}, None),
    "429@256": (256, {"p_rate_limited": 0.10, "retry_after": "1"}, None),
    "limit50@256": (256, {"rate_per_s": 50.0, "retry_after": "1"}, 50.0),
    "limit50h@256": (256, {"rate_per_s": 50.0, "retry_after": "1", "budget_headers": True}, 50.0),
    "limit100@256": (256, {"rate_per_s": 100.0, "burst": 20.0, "retry_after": "1"}, 100.0),
}
DEFAULT_SCENARIOS = ["clean@64", "clean@256", "429@64", "limit50@256", "limit50h@256"]
KEY_ENV = "BENCH_OPENAI_KEY"


def payload(path: Path = FACE) -> bytes:
    """A 224-px centre crop of a London Set face, JPEG quality 90 (~11 kB)."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _serve(latency_s: float, url_queue, stop) -> None:
    sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]
    from support.openai_server import OpenAIServer

    with OpenAIServer(latency_s=latency_s, default_text="happiness") as server:
        server.keep_records = False
        url_queue.put(server.url)
        stop.wait()


def _control(url: str, **config) -> dict:
    import httpx2

    return httpx2.post(f"{url}/_loopback/configure", json=config, timeout=30).json()


def _prompt(i: int) -> str:
    return f"Image {i}: which emotion does this face show?"


# ----------------------------------------------------------------------------- clients
async def run_naive(base_url: str, image: bytes, in_flight: int, phases: list[tuple[int, int]],
                    on_phase) -> int:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key=os.environ[KEY_ENV])
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> bool:
        async with gate:
            url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
            try:
                await client.chat.completions.create(model="bench-model", max_tokens=8, messages=_messages(i, url))
                return True
            except openai.APIError:
                return False

    ok = await _phases(phases, on_phase, lambda n, offset: asyncio.gather(*[one(offset + i) for i in range(n)]))
    await client.close()
    return ok


def _messages(i: int, image_url: str) -> list[dict]:
    """The chat messages both baseline clients send (the engine builds the same through its backend)."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": [{"type": "text", "text": _prompt(i)},
                                         {"type": "image_url", "image_url": {"url": image_url}}]}]


async def _phases(phases: list[tuple[int, int]], on_phase, run) -> int:
    """Warm-up then measured phase(s) through one client; `on_phase(k)` before each."""
    ok = 0
    for k, (n, offset) in enumerate(phases):
        on_phase(k)
        ok = sum(not isinstance(r, BaseException) and r is not False for r in await run(n, offset))
    return ok


async def run_inspect(base_url: str, image: bytes, in_flight: int, phases: list[tuple[int, int]],
                      on_phase) -> int:
    import openai
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

    client = openai.AsyncOpenAI(base_url=base_url, api_key=os.environ[KEY_ENV], max_retries=0)
    gate = asyncio.Semaphore(in_flight)

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                                openai.APIConnectionError))

    async def one(i: int) -> bool:
        async with gate:  # inspect holds the max_connections slot across its retries
            url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
            try:
                async for attempt in AsyncRetrying(wait=wait_exponential_jitter(initial=3, max=1800, jitter=3),
                                                   retry=retry_if_exception(retryable),
                                                   stop=stop_after_attempt(10), reraise=True):
                    with attempt:
                        await client.chat.completions.create(model="bench-model", max_tokens=8, messages=_messages(i, url))
                return True
            except openai.APIError:
                return False

    ok = await _phases(phases, on_phase, lambda n, offset: asyncio.gather(*[one(offset + i) for i in range(n)]))
    await client.close()
    return ok


CACHE_FLUSH_EVERY = {"each": 1, "batch": 64}  # --cache-commit: answers per cache transaction


async def run_engine(base_url: str, image: bytes, in_flight: int, phases: list[tuple[int, int]],
                     on_phase, report: dict | None = None, transport: str = "direct",
                     cache_commit: str = "each") -> int:
    from inference.vlm.cache import ResponseCache
    from inference.vlm.engine import Engine, run_all
    from inference.vlm.openai_backend import OpenAIChatBackend
    from inference.vlm.types import ChatRequest, GenerationParams, Turn

    backend = OpenAIChatBackend("bench-model", base_url=base_url, api_key_env=KEY_ENV, timeout_s=30,
                                max_connections=2 * in_flight, transport=transport)
    params = GenerationParams(max_tokens=8)
    with tempfile.TemporaryDirectory() as tmp, \
            ResponseCache(Path(tmp) / "cache.sqlite", flush_every=CACHE_FLUSH_EVERY[cache_commit]) as cache:
        engines: list = []

        def run(n: int, offset: int):
            # a fresh engine (and limiter) per phase: the measured phase starts cold, as a
            # user's run; the backend's connections opened by the warm-up are kept
            engines.append(Engine(backend, max_in_flight=in_flight, timeout_s=30, max_retries=8, cache=cache))
            requests = [ChatRequest((Turn("system", SYSTEM), Turn("user", _prompt(offset + i), with_image=True)),
                                    image, "image/jpeg", params) for i in range(n)]
            return run_all([engines[-1].complete(r, cache_key=f"k{offset + i}") for i, r in enumerate(requests)])

        ok = await _phases(phases, on_phase, run)
        if report is not None:
            report.update(engines[-1].concurrency_report())
    await backend.aclose()
    return ok


CLIENTS = {"naive": run_naive, "inspect": run_inspect, "engine": run_engine}


# ----------------------------------------------------------------------------- measuring
def measure(client: str, scenario: str, server_url: str, image: bytes, n: int, latency_s: float,
            offset: int, transport: str = "direct", cache_commit: str = "each") -> dict:
    in_flight, provider, bound = SCENARIOS[scenario]
    bound = bound or in_flight / latency_s
    runner = CLIENTS[client]
    _control(server_url, latency_s=latency_s, provider={}, keep_records=False)
    report: dict = {}

    marks: dict[str, float] = {}

    def on_phase(k: int) -> None:
        if k == 1:  # after the warm-up (connections open, no faults): the scenario starts
            _control(server_url, latency_s=latency_s, provider=provider)
            marks.update(server_cpu=_control(server_url, reset=False)["process_cpu_s"],
                         started=time.perf_counter(), cpu=time.process_time())

    async def go() -> tuple[int, float, float]:
        kwargs = {"report": report, "transport": transport, "cache_commit": cache_commit} if client == "engine" else {}
        ok = await runner(server_url + "/v1", image, in_flight, [(in_flight, offset + 10_000_000), (n, offset)],
                          on_phase, **kwargs)
        return ok, time.perf_counter() - marks["started"], time.process_time() - marks["cpu"]

    ok, elapsed, cpu_s = asyncio.run(go())
    server_cpu = marks["server_cpu"]
    stats = _control(server_url, reset=False)
    rate = ok / elapsed
    refused = stats["outcomes"].get("rate_limited", 0)
    return {"client": client, "scenario": scenario, "n": n, "ok": ok, "elapsed_s": elapsed, "rate": rate,
            "bound": bound, "ratio": rate / bound, "lost": n - stats["answered_keys"],
            "duplicates": stats["duplicates"], "refused": refused, "refused_per_answer": refused / max(1, ok),
            "requests": stats["requests"], "cpu_ms_per_req": cpu_s * 1000 / n,
            "max_concurrent": stats["max_concurrent"], "window": report,
            "server_cpu_ms_per_req": (stats["process_cpu_s"] - server_cpu) * 1000 / n}


# Where a profiled call's own CPU time goes: the first matching (path fragment, area) wins.
PROFILE_AREAS = (
    ("/inference/vlm/openai_direct.py", "backend: request building, answer parsing"),
    ("/openai/", "openai SDK (request options, typed models, response handling)"),
    ("/pydantic", "openai SDK (request options, typed models, response handling)"),
    ("/httpx2/", "HTTP stack (httpx2, httpcore2, h11, anyio)"),
    ("/httpcore2/", "HTTP stack (httpx2, httpcore2, h11, anyio)"),
    ("/h11/", "HTTP stack (httpx2, httpcore2, h11, anyio)"),
    ("/anyio/", "HTTP stack (httpx2, httpcore2, h11, anyio)"),
    ("/sniffio/", "HTTP stack (httpx2, httpcore2, h11, anyio)"),
    ("/aiohttp/", "HTTP stack (aiohttp, multidict, yarl)"),
    ("/multidict/", "HTTP stack (aiohttp, multidict, yarl)"),
    ("/yarl/", "HTTP stack (aiohttp, multidict, yarl)"),
    ("/aiohappyeyeballs/", "HTTP stack (aiohttp, multidict, yarl)"),
    ("/concurrent/", "worker threads (DNS, proxy look-ups)"),
    ("/threading.py", "worker threads (DNS, proxy look-ups)"),
    ("/json/", "JSON (request body, response)"),
    ("orjson", "JSON (request body, response)"),
    ("base64", "base64 of the image"),
    ("/inference/vlm/cache.py", "response cache (SQLite batches)"),
    ("sqlite3", "response cache (SQLite batches)"),
    ("/inference/vlm/openai_backend.py", "backend: request building, answer parsing"),
    ("/inference/vlm/", "engine, limiter, retries"),
    ("/tenacity/", "engine, limiter, retries"),
    ("/asyncio/", "asyncio event loop, sockets"),
    ("socket", "asyncio event loop, sockets"),
    ("select", "asyncio event loop, sockets"),
)


def profile_areas(stats: pstats.Stats) -> dict[str, float]:
    """Own (tottime) CPU seconds summed per area of PROFILE_AREAS ("other" for the rest)."""
    areas: dict[str, float] = {}
    for (path, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path}:{name}"
        area = next((a for fragment, a in PROFILE_AREAS if fragment in where), "other")
        areas[area] = areas.get(area, 0.0) + tottime
    return areas


def profile_engine(server_url: str, image: bytes, n: int, latency_s: float, out: Path | None,
                   transport: str = "direct", cache_commit: str = "each") -> None:
    """cProfile of the engine's measured phase, timed in *CPU* seconds of this process
    (time.process_time), so that other processes' load on a shared machine does not show up
    as time spent in whatever function was running when the scheduler preempted it."""
    _control(server_url, latency_s=latency_s, provider={}, keep_records=False)
    profiler = cProfile.Profile(time.process_time)
    marks: dict[str, float] = {}

    def on_phase(k: int) -> None:
        if k == 1:  # profile the measured phase only, after the warm-up
            marks["cpu"] = time.process_time()
            profiler.enable()

    ok = asyncio.run(run_engine(server_url + "/v1", image, 256, [(256, 20_000_000), (n, 30_000_000)], on_phase,
                                transport=transport, cache_commit=cache_commit))
    profiler.disable()
    cpu_s = time.process_time() - marks["cpu"]
    print(f"\nengine (transport {transport}, cache commit: {cache_commit}), 256 in flight, {n} requests ({ok} answered): {cpu_s:.2f} CPU s "
          f"= {cpu_s * 1000 / n:.2f} CPU s per 1,000 requests (profiler overhead included)\n")
    stats = pstats.Stats(profiler)
    areas = profile_areas(stats)
    total = sum(areas.values()) or 1.0
    print("| area | CPU s per 1,000 requests (profiled) | share |\n|---|---|---|")
    for area, seconds in sorted(areas.items(), key=lambda kv: -kv[1]):
        print(f"| {area} | {seconds * 1000 / n:.2f} | {seconds / total:.0%} |")
    print()
    stats.sort_stats("tottime").print_stats(25)
    if out is not None:
        stats.dump_stats(str(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=1.0)
    # 1,000 and 4,096: a researcher's slice is mostly its start, which the longer run dilutes.
    # (Until 2026-12: 4,096 at 64 in flight and 8,192 at 256, the limiter warm from the warm-up.)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4096], help="requests per scenario")
    parser.add_argument("--requests", type=int, default=512, help="--profile: twice this many requests")
    parser.add_argument("--clients", nargs="+", default=["engine"], choices=list(CLIENTS),
                        help="naive / inspect: the baselines, for comparison")
    parser.add_argument("--scenarios", nargs="+", default=DEFAULT_SCENARIOS, choices=list(SCENARIOS))
    parser.add_argument("--window-dir", type=Path, default=None,
                        help="write the engine's window history (JSON) and plot (PNG) per scenario here")
    parser.add_argument("--profile", action="store_true", help="only profile the engine (256 in flight)")
    parser.add_argument("--profile-out", type=Path, default=None)
    parser.add_argument("--engine-transport", default="direct", choices=["direct", "sdk", "sdk-httpx"],
                        help="the engine's OpenAIChatBackend transport (sdk-httpx: the path before aiohttp)")
    parser.add_argument("--cache-commit", default="each", choices=list(CACHE_FLUSH_EVERY),
                        help="the response cache's commits: each answer (the default) or batches of 64")
    args = parser.parse_args(argv)

    os.environ.setdefault(KEY_ENV, "sk-bench-not-a-secret")
    image = payload()
    ctx = mp.get_context("spawn")
    url_queue, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=_serve, args=(args.latency, url_queue, stop), daemon=True)
    server.start()
    rows = []
    try:
        url = url_queue.get(timeout=60)
        if args.profile:
            profile_engine(url, image, 2 * args.requests, args.latency, args.profile_out, args.engine_transport,
                           args.cache_commit)
            return 0
        offset = 0
        for scenario in args.scenarios:
            for n in args.sizes:
                for client in args.clients:
                    offset += 1_000_000
                    row = measure(client, scenario, url, image, n, args.latency, offset, args.engine_transport,
                                  args.cache_commit)
                    rows.append(row)
                    if args.window_dir is not None and row["window"]:
                        from inference.vlm.window_plot import plot_window

                        args.window_dir.mkdir(parents=True, exist_ok=True)
                        (args.window_dir / f"{scenario}-{n}.json").write_text(json.dumps(row["window"], indent=1))
                        plot_window(row["window"], args.window_dir / f"{scenario}-{n}.png")
                    print(f"{scenario:>13} {n:>5} {client:>8}: {row['rate']:.1f}/s = {row['ratio']:.3f} of bound  "
                          f"refused {row['refused']} ({row['refused_per_answer']:.1%} of answers)  "
                          f"unanswered {row['lost']}  twice {row['duplicates']}  "
                          f"{row['cpu_ms_per_req']:.2f} CPU ms/req (server {row['server_cpu_ms_per_req']:.2f})  "
                          f"server max concurrent {row['max_concurrent']}", flush=True)
    finally:
        stop.set()
        server.join(timeout=10)

    print(f"\nAPI runner, loopback server in its own process, {args.latency:g} s latency, {len(image)} B JPEG, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n")
    print("| scenario | requests | client | answers/s (bound) | of bound | refused / answers | unanswered "
          "| asked twice | CPU ms/req |\n|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['scenario']} | {row['n']} | {row['client']} | {row['rate']:.1f} ({row['bound']:g}) "
              f"| {row['ratio']:.3f} | {row['refused']} / {row['ok']} = {row['refused_per_answer']:.1%} "
              f"| {row['lost']} | {row['duplicates']} | {row['cpu_ms_per_req']:.2f} |")
    for row in rows:
        if row["window"]:
            window = row["window"]
            print(f"engine window {row['scenario']} {row['n']}: final {window.get('window')}, "
                  f"min {window.get('min_window_seen')}, rate-limited rounds {window.get('rate_limited_rounds')}, "
                  f"pace {window.get('pace_per_s')}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
