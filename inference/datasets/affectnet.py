"""Kind affectnet: AffectNet's manually annotated part as unpacked.

- `Manually_Annotated_file_lists/*.csv` (training.csv, validation.csv): header
  `subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal`;
  expression codes 0 neutral ... 7 contempt are rows of the seed (label_set affectnet); 8 none,
  9 uncertain and 10 no-face are not emotions and are excluded by default (recorded with why).
- images: `Manually_Annotated_Images/<subDirectory_filePath>`.
- valence / arousal must lie in [-1, 1]; they are kept in `extra`.
- AffectNet ships no demographics. CSVs matched by `options.demographics` (globs relative to the
  folder; default `Demographics/*.csv`) are joined by image when present: columns
  `options.demographic_columns` (image, race, gender, age); values go through race_map /
  gender_map (label_set affectnet).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from inference.datasets.base import DatasetLoad
from inference.datasets.labels import LabelMap
from inference.datasets.records import Candidate, KindOptions, LayoutAdapter, build_load

DEMOGRAPHIC_FIELDS = ("image", "race", "gender", "age")


class AffectNetOptions(KindOptions):
    lists: str = "Manually_Annotated_file_lists/*.csv"
    images_folder: str = "Manually_Annotated_Images"
    columns: dict[str, str] = {"image": "subDirectory_filePath", "emotion": "expression",
                               "valence": "valence", "arousal": "arousal"}
    demographics: list[str] = ["Demographics/*.csv"]
    demographic_columns: dict[str, str] = {"image": "subDirectory_filePath", "race": "race",
                                           "gender": "gender", "age": "age"}


class AffectNetAdapter(LayoutAdapter):
    kind = "affectnet"
    options_model = AffectNetOptions

    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        rules = self.rules(label_map)
        opts = self.options
        assert isinstance(opts, AffectNetOptions)
        root = Path(location).resolve()
        lists = sorted(root.glob(opts.lists))
        if not lists:
            raise FileNotFoundError(f"{root}: no file matches {opts.lists!r}; point datasets.{self.cfg.name}"
                                    f".location at the folder holding Manually_Annotated_file_lists/")
        people = _demographics(root, opts)
        candidates: list[Candidate] = []
        for path in lists:
            frame = _read_csv(path, [opts.columns["image"], opts.columns["emotion"]])
            for number, row in enumerate(frame.to_dict(orient="records"), start=1):
                rel = str(row.get(opts.columns["image"]) or "").strip()
                image = f"{opts.images_folder}/{rel}"
                values = {field: row.get(column) for field, column in opts.columns.items() if field != "image"}
                values.update(people.get(rel, {}))
                candidates.append(Candidate(image_id=image, path=root / image, source=str(path),
                                            row_number=number, values=values))
        return build_load(candidates, rules)


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types; all mean "not a readable CSV"
        raise ValueError(f"{path} cannot be read as CSV ({exc}); re-download it") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} has no column(s) {missing}; found {list(frame.columns)}. Map them with "
                         f"options.columns / options.demographic_columns")
    return frame


def _demographics(root: Path, opts: AffectNetOptions) -> dict[str, dict[str, str]]:
    """{image path as the lists write it: {race, gender, age}} from every matching CSV."""
    columns = {f: opts.demographic_columns.get(f, f) for f in DEMOGRAPHIC_FIELDS}
    people: dict[str, dict[str, str]] = {}
    for pattern in opts.demographics:
        for path in sorted(root.glob(pattern)):
            for row in _read_csv(path, [columns["image"]]).to_dict(orient="records"):
                found = {f: row[c] for f, c in columns.items() if f != "image" and str(row.get(c, "")).strip()}
                people.setdefault(str(row[columns["image"]]).strip(), {}).update(found)
    return people
