"""CPU time of the crossed image x rater REML fit (analysis/crossed_icc.py) as the design grows.

    .venv/bin/python scripts/bench_crossed_icc.py                    # 1,200 / 4,800 / 10,000 ratings
    .venv/bin/python scripts/bench_crossed_icc.py --sizes 240x20x100   # images x ratings/image x raters

Each size simulates an incomplete design (every rater rates images_per_rater = images x
ratings_per_image / raters images at random; image SD 0.2, rater SD 0.67, residual SD 1, as
Tae et al.'s arousal) and times `fit_crossed` alone (process CPU time, so other processes on a
shared machine do not inflate it; wall time printed beside it). Numbers go in notes, never in
tests; they size `crossed_icc.MAX_RATINGS`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from dagster_project.analysis.crossed_icc import fit_crossed, icc_from_components, variance_components


def design(n_images: int, per_image: int, n_raters: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    image, rater = rng.normal(0, 0.2, n_images), rng.normal(0, 0.67, n_raters)
    per_rater = n_images * per_image // n_raters
    rows = [(i, r) for r in range(n_raters) for i in rng.choice(n_images, per_rater, replace=False)]
    ids = np.array(rows)
    values = 5 + image[ids[:, 0]] + rater[ids[:, 1]] + rng.normal(0, 1, len(ids))
    return pd.DataFrame({"image_id": [f"i{i}" for i in ids[:, 0]], "rater": [f"r{r}" for r in ids[:, 1]],
                         "value": values})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["120x10x100", "240x20x100", "500x20x1000"],
                        help="images x ratings per image x raters")
    args = parser.parse_args()
    truth = 0.2**2 / (0.2**2 + 0.67**2 + 1)
    for size in args.sizes:
        n_images, per_image, n_raters = (int(x) for x in size.split("x"))
        long = design(n_images, per_image, n_raters)
        cpu, wall = time.process_time(), time.perf_counter()
        result = fit_crossed(long)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        icc_1, _ = icc_from_components(variance_components(result), per_image)
        print(f"{size:>14}: {len(long):>6} ratings  cpu {cpu:7.1f} s  wall {wall:7.1f} s  "
              f"ICC(A,1) {icc_1:.3f} (simulated {truth:.3f})  converged {result.converged}")


if __name__ == "__main__":
    main()
