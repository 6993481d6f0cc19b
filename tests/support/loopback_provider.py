"""A loopback provider in a process of its own, as a user's model endpoint would be: the journeys
start it, point benchmark.yaml at it and read its ledger over HTTP.

    python -m tests.support.loopback_provider --models gpt-loop-1 --latency 0.05 \\
        [--answers manifest.csv] [--provider '{"rate_per_s": 50}']

prints `url <base url>` on its first line of stdout, then serves until SIGTERM. Each image is
one ledger key per model id (`<model>:<sha256 of the first image>`), so `GET /_loopback/stats` says per
image how often it was answered (`ledger`), besides the outcome of every request (`outcomes`).
`POST /_loopback/configure` takes the `OpenAIServer.configure` fields plus `models` (the
listing, for a watched provider that starts serving a new version) and `models_status` (e.g.
503: the listing is down). With `--answers`, an image listed there (columns image, emotion;
paths relative to the file) is answered with its emotion, any other with `--default`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tests.support.openai_server import OpenAIServer, Provider, RecordedRequest


def image_key(recorded: RecordedRequest) -> str:
    return hashlib.sha256(recorded.images[0]).hexdigest() if recorded.images else recorded.prompt


def ledger_key(recorded: RecordedRequest) -> str:
    """`<model id>:<image sha256>`: one wanted answer per model version and image."""
    return f"{(recorded.body or {}).get('model')}:{image_key(recorded)}"


class LedgerServer(OpenAIServer):
    """An OpenAI-compatible server whose answer ledger is kept per image."""

    def __init__(self, *, answers: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers_by_image = answers or {}
        self.answer_fn = lambda recorded: self.answers_by_image.get(image_key(recorded), self.default_text)

    def answer_key(self, recorded: RecordedRequest) -> str:
        return ledger_key(recorded)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            ledger = dict(self.answered)
        return {**super().stats(), "ledger": ledger, "models": list(self.models)}

    def configure(self, *, models: list[str] | None = None, models_status: int | None = None,
                  **rest: Any) -> None:
        if models is not None:
            self.models = tuple(models)
        if models_status is not None:
            self.models_status = int(models_status)
        if rest:
            super().configure(**rest)


def answers_from(manifest: Path) -> dict[str, str]:
    """Image sha256 -> emotion word, from a manifest's `image` and `emotion` columns."""
    with open(manifest, newline="") as fh:
        return {hashlib.sha256((manifest.parent / row["image"]).read_bytes()).hexdigest(): row["emotion"]
                for row in csv.DictReader(fh)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="loop-1", help="comma-separated model ids the listing serves")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--answers", type=Path, help="manifest whose images are answered with their emotion")
    parser.add_argument("--default", default="neutral", help="the answer to any other image")
    parser.add_argument("--provider", default="{}", help="JSON of a Provider: rate limit and fault mix")
    args = parser.parse_args(argv)
    server = LedgerServer(latency_s=args.latency, default_text=args.default, models=tuple(args.models.split(",")),
                          answers=answers_from(args.answers) if args.answers else None)
    provider = json.loads(args.provider)
    server.provider = Provider(**provider) if provider else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"url {server.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
