"""`fer-warehouse plan` (issue 22) through the CLI, and its power arithmetic against a textbook
sample size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project.analysis.power import detectable_ratio

REPO = Path(__file__).resolve().parents[1]
LONDON = REPO.parent / "shared" / "datasets" / "london_set"


def test_detectable_ratio_matches_the_arcsine_sample_size():
    # Cohen (1988): 0.2 vs 0.3 has h = 2 asin(sqrt .3) - 2 asin(sqrt .2) = 0.2319; two-sided alpha
    # 0.05 at power 0.8 needs n = 2 (1.95996 + 0.84162)^2 / h^2 = 291.9 per group (Fleiss'
    # unpooled-variance formula gives 293, the figure usually quoted for 20 % vs 30 %).
    assert detectable_ratio(291.9, 291.9, 0.05, 0.8, 0.2) == pytest.approx(1.5, abs=0.002)
    assert detectable_ratio(291.9, 291.9, 0.05 / 10, 0.8, 0.2) > 1.6  # a family of 10 needs more


@pytest.mark.skipif(not LONDON.is_dir(), reason=f"the London Set copy is missing at {LONDON}")
def test_plan_prints_every_cell_for_the_london_set(tmp_path):
    config = tmp_path / "benchmark.yaml"
    config.write_text(
        f"warehouse: {tmp_path / 'none.duckdb'}\nreports_dir: {tmp_path}/reports\ncache_dir: {tmp_path}/cache\n"
        f"datasets:\n  london_set:\n    kind: london_set\n    location: {LONDON}\n"
        "models:\n  mini_xception:\n    kind: fer_xception\n    version: fer2013_mini_XCEPTION.102-0.66\n"
        "statistics:\n  min_cell_n: 10\n  groupings: [race, gender, age, gender*age]\n"
        "  bins: {age: [0, 25, 35, 120]}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "dagster_project.cli", "plan", "--config", str(config), "--icc", "0.5"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("london_set")]
    # four groupings x (happy, neutral, all); age in the configured bins
    assert len(lines) == 12 and {line[1] for line in lines} == {"race", "gender", "age", "gender*age"}
    age_groups = " ".join(" ".join(line) for line in lines if line[1] in ("age", "gender*age"))
    assert "0-25" in age_groups or "25-35" in age_groups or "35-120" in age_groups
    gender_all = next(line for line in lines if line[1] == "gender" and line[2] == "all")
    # 102 people, each neutral and smiling: 2 images per person, design effect 1 + (2 - 1) x 0.5
    assert "1.5" in gender_all and "female" in gender_all
    assert "ICC 0.5" in done.stdout and "projected_cost_usd" in done.stdout
    ratio = float(gender_all[-3])
    assert 1.5 < ratio < 4  # ~100 images per gender after the design effect, m = 1
