"""Dataset emotion vocabularies, read from the dbt seed `emotion_label_map.csv`.

The seed is the single source of truth for label mapping (dbt joins on it too); Python
only uses it to decide up front which rows carry a label the warehouse can interpret.
The seeds ship inside this package (`inference/datasets/seeds/`, package data); `dbt/seeds`
is a symlink to that folder, so dbt and an installed `inference` read the same files.
Labels match a seed row by `label_key` (the SQL macro `label_key` applies the same rule).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

SEED_FILE = "emotion_label_map.csv"
SEED_COLUMNS = ("label_set", "source_label", "emotion")


# Stripped at both ends of a label before matching: ASCII whitespace and the no-break space
# (spreadsheets write it). Spelled out (not str.strip()) so SQL trims exactly the same set.
LABEL_WHITESPACE = " \t\n\x0b\x0c\r\xa0"


def label_key(label: str) -> str:
    """What a label is matched on: trimmed and lower-cased (dbt macro `label_key`, same rule)."""
    return label.strip(LABEL_WHITESPACE).lower()


def default_seeds_dir() -> Path:
    """The seeds shipped with the package (dbt/seeds links here)."""
    return Path(__file__).resolve().parent / "seeds"


class UnknownLabelSetError(KeyError):
    """A dataset names a label_set that has no rows in the seed."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class LabelMap:
    seed_path: Path
    # {label_set: {label_key(source_label): canonical emotion}}
    mapping: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def label_sets(self) -> list[str]:
        return sorted(self.mapping)

    def _set(self, label_set: str) -> dict[str, str]:
        try:
            return self.mapping[label_set]
        except KeyError:
            raise UnknownLabelSetError(
                f"label_set {label_set!r} has no rows in {self.seed_path}; add rows "
                f"'{label_set},<source_label>,<canonical emotion>' to that seed, or set the "
                f"dataset's label_set to one of: {', '.join(self.label_sets)}"
            ) from None

    def knows(self, label_set: str, source_label: str | None) -> bool:
        known = self._set(label_set)
        return source_label is not None and label_key(source_label) in known

    def canonical(self, label_set: str, source_label: str | None) -> str | None:
        known = self._set(label_set)
        return None if source_label is None else known.get(label_key(source_label))

    def labels(self, label_set: str) -> list[str]:
        return sorted(self._set(label_set))


def load_label_map(seeds_dir: Path | None = None) -> LabelMap:
    return _load_seed_map(seeds_dir, SEED_FILE, SEED_COLUMNS)


# The race and gender seeds: the same shape as the emotion seed, keyed by the dataset's label_set.
RACE_SEED = ("race_map.csv", ("label_set", "source_race", "race"))
GENDER_SEED = ("gender_map.csv", ("label_set", "source_gender", "gender"))


@dataclass(frozen=True)
class GroupMaps:
    """The race and gender seeds, mapped the way dbt's `int_images_labeled` maps them: the
    dataset's own label_set first, then 'canonical', then the value's label_key."""

    race: LabelMap
    gender: LabelMap

    def canonical(self, field: str, label_set: str, value: str | None) -> str | None:
        if value is None or not label_key(value):
            return None
        seed = self.race if field == "race" else self.gender
        for name in (label_set, "canonical"):
            found = seed.mapping.get(name, {}).get(label_key(value))
            if found is not None:
                return found
        return label_key(value)

    def knows(self, field: str, label_set: str, value: str | None) -> bool:
        """Whether the dataset's own label_set has a row for the value (a seeded code)."""
        seed = self.race if field == "race" else self.gender
        return value is not None and label_key(value) in seed.mapping.get(label_set, {})


def load_group_maps(seeds_dir: Path | None = None) -> GroupMaps:
    return GroupMaps(race=_load_seed_map(seeds_dir, *RACE_SEED), gender=_load_seed_map(seeds_dir, *GENDER_SEED))


def _load_seed_map(seeds_dir: Path | None, seed_file: str, columns: tuple[str, str, str]) -> LabelMap:
    """Read a three-column seed (label_set, source value, canonical value) into a LabelMap."""
    path = (seeds_dir or default_seeds_dir()) / seed_file
    if not path.is_file():
        raise FileNotFoundError(f"label seed {path} does not exist; it ships with the package under "
                                f"inference/datasets/seeds/ (dbt/seeds links there)")
    mapping: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; header must be {','.join(columns)}")
        for number, row in enumerate(reader, start=1):
            label_set, source, target = (str(row[c] or "").strip() for c in columns)
            if not (label_set and source and target):
                raise ValueError(f"{path}: data row {number} has an empty field; fill in {','.join(columns)}")
            known = mapping.setdefault(label_set, {})
            source = label_key(source)
            if known.get(source, target) != target:
                raise ValueError(
                    f"{path}: data row {number} maps {label_set}/{source} to {target!r} but an earlier "
                    f"row maps it to {known[source]!r}; keep one"
                )
            known[source] = target
    return LabelMap(seed_path=path, mapping=mapping)
