"""Kinds read from the folder layout alone: `filename_pattern` (a regular expression with named
groups over each file's path relative to the dataset folder) and `folders` (label = the file's
folder). The named kinds chicago_face, radiate, tarr, caer_s, caer and kdef are presets of
`filename_pattern` in presets.yaml: data, overridable key by key in `datasets.<name>.options`.

Named groups: `emotion` (required), `race`, `gender`, `identity`, `age`; any other group is kept
as an attribute in `extra`. `identity` may instead be a template over groups, e.g. '{gender}{number}'.
Files with one of `extensions` that do not match the pattern are quarantined (never skipped);
other files (readmes, spreadsheets) and macOS zip debris (`__MACOSX/`, `._*`) are not images.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

from inference.datasets.base import DatasetLoad, QuarantinedRow
from inference.datasets.labels import LabelMap
from inference.datasets.records import Candidate, KindOptions, LayoutAdapter, build_load

IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"]


class PatternOptions(KindOptions):
    # Matched against the whole posix path relative to `location` (re.fullmatch).
    pattern: str | None = None
    extensions: list[str] = IMAGE_EXTENSIONS
    media_type: Literal["image", "video"] = "image"
    identity: str | None = None  # template over named groups, e.g. '{race}{gender}-{number}'
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc}); fix it") from None
        if "emotion" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<emotion>...) that captures the label")
        return value

    @model_validator(mode="after")
    def _has_pattern(self) -> PatternOptions:
        if self.pattern is None:
            raise ValueError("pattern: required; a regular expression over paths relative to the "
                             "dataset folder with a group (?P<emotion>...), e.g. "
                             r"'(?P<emotion>[^/]+)/(?P<identity>\w+)_\d+\.jpg'")
        if self.identity is not None:
            groups = set(re.compile(self.pattern).groupindex)
            missing = sorted(set(re.findall(r"{(\w+)}", self.identity)) - groups)
            if missing:
                raise ValueError(f"identity: template names group(s) {missing} that the pattern lacks")
        return self


class PatternAdapter(LayoutAdapter):
    """Kind filename_pattern, and every preset of it (the kind's name picks the preset)."""

    kind = "filename_pattern"
    options_model = PatternOptions

    def load_images(self, location: Path, label_map: LabelMap) -> DatasetLoad:
        options = self.options
        assert isinstance(options, PatternOptions)
        rules = self.rules(label_map, options.media_type)
        unmatched: list[QuarantinedRow] = []
        candidates = list(match_files(Path(location).resolve(), options, unmatched, self.cfg.name))
        return build_load(candidates, rules, unmatched)


def match_files(root: Path, options: PatternOptions, unmatched: list[QuarantinedRow],
                name: str) -> Iterator[Candidate]:
    """Each file under `root` with a listed extension, matched against the pattern; the ones
    that do not match go to `unmatched` with the fix."""
    regex = re.compile(options.pattern or "", re.IGNORECASE if options.ignore_case else 0)
    extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in options.extensions}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions):
        rel = path.relative_to(root)
        if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts) or not path.is_file():
            continue
        image_id = rel.as_posix()
        match = regex.fullmatch(image_id)
        if match is None:
            unmatched.append(QuarantinedRow(str(path), 0, image_id, (
                f"{image_id}: does not match the layout pattern {options.pattern!r}; move or rename "
                f"the file, or adjust datasets.{name}.options.pattern")))
            continue
        values = {k: v for k, v in match.groupdict().items() if v is not None}
        if options.identity is not None:
            values["identity"] = options.identity.format(**{k: v or "" for k, v in match.groupdict().items()})
        yield Candidate(image_id=image_id, path=path, source=str(path), row_number=0, values=values)
