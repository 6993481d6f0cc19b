"""Kind raf_db: RAF-DB basic as unpacked (`location` = the `basic` folder, or the folder above it).

- `EmoLabel/list_patition_label.txt` (the download's spelling; `list_partition_label.txt` is
  accepted too): one line `<image name> <code>` per image, codes 1 surprise ... 7 neutral (seed
  label_set raf_db).
- images: `Image/aligned/<stem>_aligned.jpg` (default) or `Image/original/<image name>`.
- `Annotation/manual/<stem>_manu_attri.txt`: lines 1-5 landmarks, line 6 gender (0 male,
  1 female, 2 unsure), line 7 race (0 Caucasian, 1 African-American, 2 Asian), line 8 age bin
  (0: 0-3 ... 4: 70+). The codes are rows of race_map / gender_map (label_set raf_db).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from inference.datasets.base import DatasetLoad, QuarantinedRow
from inference.datasets.labels import LabelMap
from inference.datasets.records import Candidate, KindOptions, LayoutAdapter, build_load

ATTRIBUTE_LINES = {"gender": 6, "race": 7, "age_bin": 8}  # 1-based lines of *_manu_attri.txt


class RafDbOptions(KindOptions):
    label_files: list[str] = ["EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt"]
    images: Literal["aligned", "original"] = "aligned"
    attributes_folder: str = "Annotation/manual"


class RafDbAdapter(LayoutAdapter):
    kind = "raf_db"
    options_model = RafDbOptions
    folder_hint = "RAF-DB's basic/ unpacks to"

    def image_root(self, location: Path) -> Path:
        basic = Path(location) / "basic"
        return basic if (basic / "EmoLabel").is_dir() else Path(location)

    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        rules = self.rules(label_map)
        root = self.image_root(Path(location)).resolve()
        opts = self.options
        assert isinstance(opts, RafDbOptions)
        labels = next((root / f for f in opts.label_files if (root / f).is_file()), None)
        if labels is None:
            raise FileNotFoundError(f"{root}: none of {opts.label_files} exists; point datasets."
                                    f"{self.cfg.name}.location at RAF-DB's basic/ folder")
        quarantined: list[QuarantinedRow] = []
        candidates = []
        for number, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                quarantined.append(QuarantinedRow(str(labels), number, None, (
                    f"{labels.name} line {number}: expected '<image name> <code>', got {line!r}; fix the line"),
                    {"line": line}))
                continue
            name, code = fields
            stem = PurePosixPath(name).stem
            image = (f"Image/aligned/{stem}_aligned.jpg" if opts.images == "aligned" else f"Image/original/{name}")
            attributes, problem = _attributes(root / opts.attributes_folder / f"{stem}_manu_attri.txt")
            if problem:
                quarantined.append(QuarantinedRow(str(labels), number, image, f"{image}: {problem}",
                                                  {"image": name, "emotion": code}))
                continue
            candidates.append(Candidate(image_id=image, path=root / image, source=str(labels),
                                        row_number=number, values={"emotion": code, **attributes}))
        return build_load(candidates, rules, quarantined)


    def empty_load_hint(self, location: Path, load: DatasetLoad) -> str:
        opts = self.options
        assert isinstance(opts, RafDbOptions)
        images = self.image_root(Path(location)) / "Image"
        other = "original" if opts.images == "aligned" else "aligned"
        if not (images / opts.images).is_dir() and (images / other).is_dir():
            return (f"only Image/{other}/ is unpacked and datasets.{self.cfg.name}.options.images is "
                    f"{opts.images!r}: set `options.images: {other}`, or unpack Image/{opts.images}/ too")
        return super().empty_load_hint(location, load)


def _attributes(path: Path) -> tuple[dict[str, str], str | None]:
    """Gender, race and age-bin codes of one image, or the problem with its annotation file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}, f"its annotation {path} does not exist; restore it from the download"
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"its annotation {path} cannot be read ({exc}); restore it from the download"
    if len(lines) < max(ATTRIBUTE_LINES.values()):
        return {}, (f"its annotation {path} has {len(lines)} lines; lines 6-8 must hold gender, race "
                    f"and age bin. Restore it from the download")
    return {field: lines[n - 1].strip() for field, n in ATTRIBUTE_LINES.items()}, None
