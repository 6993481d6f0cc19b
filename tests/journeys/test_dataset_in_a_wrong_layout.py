"""Journey: a researcher adds a dataset unpacked in a wrong or partial layout and runs the demo.
Ingestion fails naming what it looked for and the fix, and nothing half-loaded stays behind;
after the fix the dataset loads, its bad rows counted in raw.quarantine with their reasons.

Before the fix, RAF-DB unpacked with only Image/original/ "succeeded" with 0 images and the
next step failed with "raw.dataset_images has no rows ...; materialize raw/dataset_images first"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.dataset_layouts import build_chicago_face, build_raf_db
from tests.support.journey import MINI_XCEPTION, Workspace

MODEL = f"  mini: {{kind: fer_xception, version: {MINI_XCEPTION}}}\n"


def rows_of(work: Workspace, dataset: str) -> int:
    if not work.table_exists("raw", "dataset_images"):
        return 0
    return int(work.scalar(f"select count(*) from raw.dataset_images where dataset = '{dataset}'"))


@pytest.mark.timeout(1200)
def test_a_dataset_in_a_wrong_layout_fails_with_the_fix_and_loads_once_fixed(tmp_path: Path) -> None:
    work = Workspace(tmp_path / "work")
    raf = build_raf_db(tmp_path / "downloads")
    image = raf / "basic" / "Image"
    shutil.move(image / "aligned", image / "original")  # only the original images were unpacked
    for aligned in (image / "original").iterdir():  # ... under their original names
        aligned.rename(aligned.with_name(aligned.name.replace("_aligned", "")))

    work.write_config(f"  raf: {{kind: raf_db, location: {raf}}}\n", MODEL)
    failed = work.cli("demo", check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "no image loaded" in said and "Image/aligned/" in said, said[-3000:]
    assert "options.images: original" in said, said[-3000:]
    assert "materialize raw/dataset_images first" not in said
    assert rows_of(work, "raf") == 0

    # A Chicago Face copy one folder too high: the error names the folder that holds the layout.
    cfd = build_chicago_face(tmp_path / "cfd_download")
    work.write_config(f"  cfd: {{kind: chicago_face, location: {cfd.parent}}}\n", MODEL)
    failed = work.cli("demo", check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "no image loaded" in said, said[-3000:]
    assert f"{cfd} holds the chicago_face layout" in said, said[-3000:]
    assert rows_of(work, "cfd") == 0

    # The fix the error named: the dataset loads; its bad rows are counted with their reasons.
    work.write_config(f"  raf: {{kind: raf_db, location: {raf}, options: {{images: original}}}}\n", MODEL)
    work.cli("demo")
    assert rows_of(work, "raf") == 4
    reasons = [row["reason"] for row in work.sql(
        "select reason from raw.quarantine where dataset = 'raf' order by reason")]
    assert len(reasons) == 3, reasons
    assert any("label" in r and "'9'" in r for r in reasons), reasons
    assert any("annotation" in r and "does not exist" in r for r in reasons), reasons
    answered = work.scalar("select count(*) from raw.predictions where dataset = 'raf' and model = 'mini'")
    assert answered == "4"
