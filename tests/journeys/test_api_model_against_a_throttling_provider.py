"""Journey: a researcher evaluates an API model on a seed-study-sized slice (1,008 faces) against a
provider that enforces a request rate and also throttles at random, fails with 5xx and hangs now
and then. Every image is answered, none is answered twice, and the run says how many calls were
throttled.

Before the fix (issue "The API runner at the limit from the first request"), a wait imposed by a
rate limit used up an image's retries: images whose retries all met 429s were stored unanswered."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.journey import Workspace, provider
from tests.support.tae_fixture import build_tae_fixture

IDENTITIES_PER_CELL = 28  # 3 races x 2 genders x 6 emotions x 28 = 1,008 faces
PROVIDER = {"rate_per_s": 50, "p_rate_limited": 0.05, "p_server_error": 0.02, "p_hang": 0.002, "hang_s": 20,
            "retry_after": "1", "seed": 7}


@pytest.mark.timeout(1500)
def test_every_image_is_answered_once_under_a_throttling_provider(tmp_path: Path) -> None:
    work = Workspace(tmp_path / "work")
    tae = build_tae_fixture(tmp_path / "faces", identities_per_cell=IDENTITIES_PER_CELL)
    with provider(tmp_path / "provider.log", "--models", "gpt-loop", "--latency", "0.2",
                  "--answers", str(tae.manifest), "--provider", json.dumps(PROVIDER)) as api:
        work.write_config(
            f"  faces: {{kind: manifest, location: {tae.manifest}, label_set: canonical}}\n",
            "  api_vlm:\n    kind: openai\n    version: gpt-loop\n"
            f"    options: {{base_url: '{api.base_url}', api_key_env: null, max_in_flight: 256, max_retries: 3, "
            "timeout_s: 5}\n")
        demo = work.cli("demo", timeout_s=1200)
        stats = api.stats()
    ledger = stats["ledger"]
    assert len(ledger) == tae.n_images, f"{tae.n_images - len(ledger)} images never answered"
    assert set(ledger.values()) == {1}, {k: n for k, n in ledger.items() if n > 1}
    throttled = stats["outcomes"].get("rate_limited", 0)
    assert throttled > 0  # the provider did throttle
    answered = work.sql("select count(distinct image_id) as n from raw.predictions "
                        "where model = 'api_vlm' and parse_status in ('ok', 'repaired')")
    assert answered == [{"n": str(tae.n_images)}]
    assert work.scalar("select count(*) from raw.transport_failures where model = 'api_vlm' "
                       "and kind in ('rate_limited', 'deadline')") == "0"
    # The run's own account, in the log the demo points at: calls made and how many were throttled.
    log = Path(re.search(r"full log: (\S+)", demo.stdout).group(1)).read_text()
    said = re.search(r"api_vlm@gpt-loop on faces: .*?(\d+) throttled", log)
    assert said, "the evaluation's log line does not say how many calls were throttled"
    assert int(said.group(1)) == throttled
