"""Face Research Lab London Set: loader for the published layout, and a verified downloader.

Layout (as published in debruine/webmorphR.stim): `neutral_front/NNN_03.jpg`,
`smiling_front/NNN_08.jpg` and `london_info.csv` (face_id,face_age,face_gender,face_eth).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from inference.datasets.base import DatasetAdapter, DatasetLoad, ImageRecord, QuarantinedRow
from inference.datasets.labels import LabelMap
from inference.datasets.manifest import ImageProblem, inspect_image
from inference.download import DownloadError, fetch_bytes, fetch_verified, read_checksums

PUBLISHED_REPO = "https://raw.githubusercontent.com/debruine/webmorphR.stim/master"
DEFAULT_BASE_URL = f"{PUBLISHED_REPO}/inst"
DEFAULT_INFO_URL = f"{PUBLISHED_REPO}/data-raw/london_info.csv"
# Checksums of the full-size published originals (copied from the shared dataset folder).
ORIGINALS_SHA256 = Path(__file__).resolve().parent / "london_originals.sha256"
# london_info.csv is not in ORIGINALS.sha256. This is the sha256 of the copy in
# shared/datasets/london_set (2078 bytes, same as data-raw/london_info.csv at commit
# d2de378). It is not enforced by default (pass info_sha256= to pin it): instead the
# downloaded CSV is validated (header, one row per identity, ids covering every image).
LONDON_INFO_SHA256 = "3cde9e7471b4bb895a78b351eec868298008d61cfe545900b1f7e37a97ed935b"

INFO_FILE = "london_info.csv"
INFO_COLUMNS = ["face_id", "face_age", "face_gender", "face_eth"]
EXPRESSIONS = {"neutral": ("neutral_front", "03"), "smiling": ("smiling_front", "08")}
MISSING = {"", "NA"}


# ---------------------------------------------------------------- the adapter


class LondonSetAdapter(DatasetAdapter):
    """Kind london_set: the configured local copy, else a verified download into the cache.

    options: base_url (a mirror with the published layout), info_url, checksums (a sha256sum
    file; needed when the mirror does not serve the full-size originals)."""

    kind = "london_set"

    def locate(self) -> Path:
        local = self.ctx.resolve(self.cfg.location) if self.cfg.location else None
        return obtain_london_set(local, self.ctx.cache_dir, dict(self.cfg.options))

    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        return _known_labels_only(load_london_set(location), self.cfg.effective_label_set, label_map)


def _known_labels_only(load: DatasetLoad, label_set: str, label_map: LabelMap) -> DatasetLoad:
    """The London loader emits fixed labels; a seed without them must not pass silently."""
    kept, quarantined = [], list(load.quarantined)
    for image in load.images:
        if label_map.knows(label_set, image.source_label):
            kept.append(image)
        else:
            quarantined.append(QuarantinedRow(
                source=str(image.path.parent.parent), row_number=0, image_path=image.image_id,
                reason=(f"{image.image_id}: label {image.source_label!r} is not in label_set "
                        f"{label_set!r}; add a row '{label_set},{image.source_label},<canonical "
                        f"emotion>' to dbt/seeds/emotion_label_map.csv"),
            ))
    return DatasetLoad(images=kept, quarantined=quarantined)


def obtain_london_set(cfg_location: Path | None, cache_dir: Path, options: dict[str, Any]) -> Path:
    """Use the configured local copy when it exists, else download a verified one into the cache."""
    if cfg_location is not None and (Path(cfg_location) / INFO_FILE).is_file():
        return Path(cfg_location)
    checksums = options.get("checksums")
    return download_london_set(
        Path(cache_dir) / "london_set",
        base_url=options.get("base_url", DEFAULT_BASE_URL),
        checksums=Path(checksums) if checksums else None,
        info_url=options.get("info_url"),
    )


# ---------------------------------------------------------------- loading


def load_london_set(root: Path) -> DatasetLoad:
    root = Path(root).resolve()
    info = root / INFO_FILE
    if not info.is_file():
        raise FileNotFoundError(
            f"{info} does not exist; {root} is not a London Set copy (expected "
            f"{INFO_FILE}, neutral_front/ and smiling_front/). Fix the dataset location "
            f"or remove it so the set is downloaded."
        )
    people, quarantined = _read_info(info.read_text(encoding="utf-8"), str(info))
    images: list[ImageRecord] = []
    for face_id, (row_number, person) in people.items():
        for label, (folder, suffix) in EXPRESSIONS.items():
            image_id = f"{folder}/{face_id}_{suffix}.jpg"
            try:
                width, height, digest = inspect_image(root / image_id)
            except ImageProblem as exc:
                quarantined.append(
                    QuarantinedRow(str(root), row_number, image_id, f"{image_id}: {exc}", person)
                )
                continue
            images.append(
                ImageRecord(
                    image_id=image_id,
                    path=root / image_id,
                    image_hash=digest,
                    source_label=label,
                    identity=face_id,
                    race=person["race"],
                    gender=person["gender"],
                    age=person["age"],
                    width=width,
                    height=height,
                )
            )
    quarantined.extend(_orphan_images(root, set(people)))
    return DatasetLoad(images=images, quarantined=quarantined)


def _read_info(text: str, source: str) -> tuple[dict[str, tuple[int, dict]], list[QuarantinedRow]]:
    """Parse london_info.csv; bad rows are quarantined, good ones keyed by face_id."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if [h.strip() for h in header] != INFO_COLUMNS:
        raise ValueError(f"{source}: header is {header!r}, expected {','.join(INFO_COLUMNS)}")
    people: dict[str, tuple[int, dict]] = {}
    bad: list[QuarantinedRow] = []
    for number, row in enumerate(reader, start=1):
        if not any(cell.strip() for cell in row):
            continue
        person, problem = _parse_person(row, people)
        if problem:
            raw = dict(zip(INFO_COLUMNS, row))
            bad.append(QuarantinedRow(source, number, None, f"{source} row {number}: {problem}", raw))
        else:
            people[person["identity"]] = (number, person)
    return people, bad


def _parse_person(row: list[str], seen: dict) -> tuple[dict, str | None]:
    if len(row) != len(INFO_COLUMNS):
        return {}, f"has {len(row)} fields, expected {len(INFO_COLUMNS)} ({','.join(INFO_COLUMNS)})"
    face_id, age, gender, eth = (cell.strip() for cell in row)
    if not face_id.isdigit():
        return {}, f"face_id {face_id!r} is not a number like '001'; fix the id"
    if face_id in seen:
        return {}, f"face_id {face_id} repeats data row {seen[face_id][0]}; keep one row per face"
    try:
        age_value = None if age in MISSING else float(age)
    except ValueError:
        return {}, f"face_age {age!r} is not a number; write a number or NA"
    person = {
        "identity": face_id,
        "age": age_value,
        "gender": None if gender in MISSING else gender,
        "race": None if eth in MISSING else eth,  # kept verbatim, e.g. 'east_asian/white'
    }
    return person, None


def _orphan_images(root: Path, face_ids: set[str]) -> list[QuarantinedRow]:
    """Images on disk whose identity has no usable row carry no demographics: quarantine."""
    orphans = []
    for folder, suffix in EXPRESSIONS.values():
        for path in sorted((root / folder).glob(f"*_{suffix}.jpg")):
            face_id = path.name.split("_")[0]
            if face_id not in face_ids:
                orphans.append(
                    QuarantinedRow(
                        str(root), 0, f"{folder}/{path.name}",
                        f"{folder}/{path.name}: identity {face_id} has no usable row in "
                        f"{INFO_FILE}; add or fix its row",
                    )
                )
    return orphans


# ---------------------------------------------------------------- downloading


def download_london_set(
    dest: Path,
    base_url: str = DEFAULT_BASE_URL,
    checksums: Path | None = None,
    info_url: str | None = None,
    *,
    info_sha256: str | None = None,
    timeout_s: float = 60.0,
    retries: int = 3,
) -> Path:
    """Fetch every image in `checksums` (default: the published originals) plus the info CSV.

    `info_url` defaults to the published CSV when `base_url` is the published one, and to
    `<base_url>/london_info.csv` for a mirror that uses the dataset's own layout.
    """
    dest = Path(dest)
    sums = read_checksums(Path(checksums) if checksums else ORIGINALS_SHA256)
    for rel, digest in sorted(sums.items()):
        _check_relative(rel)
        fetch_verified(f"{base_url.rstrip('/')}/{rel}", dest / rel, digest,
                       timeout_s=timeout_s, retries=retries)
    if info_url is None:
        info_url = DEFAULT_INFO_URL if base_url == DEFAULT_BASE_URL else f"{base_url.rstrip('/')}/{INFO_FILE}"
    face_ids = {PurePosixPath(rel).name.split("_")[0] for rel in sums}
    if info_sha256:
        fetch_verified(info_url, dest / INFO_FILE, info_sha256, timeout_s=timeout_s, retries=retries)
        _validate_info((dest / INFO_FILE).read_text(encoding="utf-8"), info_url, face_ids)
    else:
        _fetch_info(info_url, dest / INFO_FILE, face_ids, timeout_s, retries)
    return dest


def _check_relative(rel: str) -> None:
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or ".." in parts or not parts:
        raise DownloadError(f"checksum entry {rel!r} is not a plain relative path; fix the checksum file")


def _validate_info(text: str, source: str, face_ids: set[str]) -> None:
    """Unpinned CSV: accept it only if it is the table we expect, row for row."""
    try:
        people, bad = _read_info(text, source)
    except ValueError as exc:
        raise DownloadError(f"{exc}; the published {INFO_FILE} may have changed") from None
    if bad:
        raise DownloadError(f"{source}: {len(bad)} bad row(s), first: {bad[0].reason}")
    missing = sorted(face_ids - set(people))
    if missing:
        raise DownloadError(f"{source}: no row for face_id(s) {', '.join(missing[:10])}; "
                            f"the CSV does not match the images")


def _fetch_info(url: str, dest: Path, face_ids: set[str], timeout_s: float, retries: int) -> None:
    if dest.is_file():
        try:
            _validate_info(dest.read_text(encoding="utf-8"), str(dest), face_ids)
            return  # a valid copy is already there: no request
        except (DownloadError, UnicodeDecodeError):
            pass
    body = fetch_bytes(url, timeout_s=timeout_s, retries=retries)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DownloadError(f"{url}: not UTF-8 text; expected {INFO_FILE}") from None
    _validate_info(text, url, face_ids)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
