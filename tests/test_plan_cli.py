"""`fer-warehouse plan` (issue 22) through the CLI, and its power arithmetic against a textbook
sample size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project.analysis.power import detectable_ratio
from tests.support.dataset_layouts import image

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
    lines = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["london_set"]]
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


def _run_plan(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "dagster_project.cli", "plan", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=config.parent)


def test_plan_for_a_chicago_face_shaped_set_with_repeated_identities_and_a_kind_column(tmp_path):
    # CFD's layout: 4 races x 2 genders x 12 targets; every target neutral, half of them also
    # angry, fearful and happy with closed and open mouth (happy_mouth: a column the kind derives).
    root = tmp_path / "CFD Version 3.0"
    for race in "ABLW":
        for gender in "FM":
            for number in range(12):
                target = f"{race}{gender}-{200 + number}"
                codes = ["N"] + (["A", "F", "HC", "HO"] if number % 2 == 0 else [])
                for k, code in enumerate(codes):
                    image(root / f"Images/CFD/{target}/CFD-{target}-{k + 1:03d}-{code}.jpg", k)
    config = tmp_path / "benchmark.yaml"
    config.write_text(
        f"warehouse: {tmp_path / 'none.duckdb'}\nreports_dir: {tmp_path}/reports\ncache_dir: {tmp_path}/cache\n"
        f"datasets:\n  cfd:\n    kind: chicago_face\n    location: {root}\n"
        "models:\n  mini_xception:\n    kind: fer_xception\n    version: fer2013_mini_XCEPTION.102-0.66\n"
        "statistics:\n  min_cell_n: 10\n  groupings: [race, gender, happy_mouth]\n")
    done = _run_plan(config, "--icc", "0.3")
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    lines = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["cfd"]]
    cells = {(line[1], line[2]) for line in lines}
    assert ("race", "all") in cells and ("race", "neutral") in cells and ("happy_mouth", "happy") in cells
    race_all = next(line for line in lines if line[1:3] == ["race", "all"])
    # 24 people per race, 72 images: 3 per person -> planned design effect 1 + 2 x 0.3 = 1.6
    assert race_all[8:12] == ["72", "24", "72", "24"] and race_all[12] == "1.6"
    happy_mouth = next(line for line in lines if line[1:3] == ["happy_mouth", "happy"])
    assert "closed" in " ".join(happy_mouth) and "open" in " ".join(happy_mouth)
