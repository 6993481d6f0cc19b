"""Kind chicago_face: the Chicago Face Database (CFD 3.0 with CFD-MR and CFD-INDIA) as unpacked,
`Images/<subset>/<target>/CFD-<race><gender>-<target number>-<image number>-<expression>.jpg`
(the filename_pattern preset in presets.yaml), plus the norming workbook when it is there.

The workbook (`CFD 3.0 Norming Data and Codebook.xlsx`) has one data sheet per norming sample;
in each, the first row (of the top 30) holding a cell `Target` is the header. Every sheet's
row of an image's target is joined into `extra.norming.<sheet>` (age, the perceived-emotion
ratings and the rest, as the workbook names them); `age` is the first sheet's `Age`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from inference.datasets.base import DatasetLoad, ImageRecord
from inference.datasets.labels import LabelMap
from inference.datasets.pattern import PatternAdapter, PatternOptions

HEADER_SEARCH_ROWS = 30


class ChicagoFaceOptions(PatternOptions):
    # Relative to the dataset folder; null: do not join norming data.
    norming_workbook: str | None = "CFD 3.0 Norming Data and Codebook.xlsx"
    norming_target_column: str = "Target"
    norming_age_column: str = "Age"


class ChicagoFaceAdapter(PatternAdapter):
    kind = "chicago_face"
    options_model = ChicagoFaceOptions

    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        load = super().load_images(location, label_map)
        opts = self.options
        assert isinstance(opts, ChicagoFaceOptions)
        workbook = Path(location) / opts.norming_workbook if opts.norming_workbook else None
        if workbook is None or not workbook.is_file():
            return load
        norms = read_norming_workbook(workbook, opts.norming_target_column)
        load.images = [_with_norms(img, norms, opts.norming_age_column) for img in load.images]
        return load


def read_norming_workbook(path: Path, target_column: str = "Target") -> dict[str, dict[str, dict[str, Any]]]:
    """{target: {sheet: {column: value}}} of every sheet that has a `target_column` header."""
    try:
        import openpyxl
    except ImportError:  # a declared dependency; this names the fix if an install lacks it
        raise ImportError(f"reading {path} needs openpyxl; `pip install openpyxl`, or set "
                          f"options.norming_workbook: null to load the images without it") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile / XML errors of many types all mean "not a usable workbook"
        raise ValueError(f"{path} cannot be read as an .xlsx workbook ({type(exc).__name__}: {exc}); "
                         f"re-download it, or set options.norming_workbook: null") from None
    norms: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for sheet in book.worksheets:
            rows = sheet.iter_rows(values_only=True)
            header = _find_header(rows, target_column)
            if header is None:
                continue  # a codebook / read-me sheet
            at = header.index(target_column)
            for row in rows:
                target = row[at] if at < len(row) else None
                if target is None or not str(target).strip():
                    continue
                cells = {h: _cell(v) for h, v in zip(header, row) if h and h != target_column and v is not None}
                norms.setdefault(str(target).strip(), {})[sheet.title] = cells
    finally:
        book.close()
    return norms


def _find_header(rows, target_column: str) -> list[str] | None:
    for _, row in zip(range(HEADER_SEARCH_ROWS), rows):
        header = [str(c).strip() if c is not None else "" for c in row]
        if target_column in header:
            return header
    return None


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _with_norms(image: ImageRecord, norms: dict[str, dict[str, dict[str, Any]]], age_column: str) -> ImageRecord:
    found = norms.get(image.identity or "")
    if not found:
        return image
    ages = [sheet.get(age_column) for sheet in found.values() if isinstance(sheet.get(age_column), (int, float))]
    return replace(image, age=float(ages[0]) if ages else image.age, extra={**image.extra, "norming": found})
