"""The benchmark declaration (`benchmark.yaml`): what datasets and models to evaluate.

Validation errors name the offending key and say how to fix it, because users edit this
file by hand and a pydantic traceback is not an explanation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from inference.kinds import DATASET_ADAPTERS, MODEL_ADAPTERS, model_family
from inference.paper_names import PaperName, paper_name
from inference.preprocessing_config import PreprocessingConfig
from inference.watch import WatchConfig

CONFIG_ENV = "FER_CONFIG"
WAREHOUSE_ENV = "FER_WAREHOUSE"
RAW_SLICES_ENV = "FER_RAW_SLICES"  # the Parquet slice store (inference/slice_store.py), overriding `raw_slices:`
DEFAULT_CONFIG = "benchmark.yaml"
DEFAULT_WAREHOUSE = "data/warehouse.duckdb"

# Known kinds come from the adapter registry (inference.kinds), which imports no adapter.
DATASET_KINDS = tuple(DATASET_ADAPTERS)
# Kinds with no vocabulary of their own: their labels default to the 'canonical' label_set.
GENERIC_DATASET_KINDS = ("manifest", "folders", "filename_pattern")
MODEL_KINDS = tuple(MODEL_ADAPTERS)
# Kinds that answer through a chat backend and a prompt protocol
# (options: inference.models.vlm_options.VLMOptions).
VLM_KINDS = ("openai", "gemini", "transformers", "mlx")
# Kinds whose default endpoint is a third-party API: face images leave the machine.
EXTERNAL_API_KINDS = ("openai", "gemini")
# Partition keys are joined by Dagster with "|" and shown in URLs; keep names plain.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class ConfigError(ValueError):
    """A problem in the benchmark file, phrased for the person editing it."""


def _known_kind(value: str, kinds: tuple[str, ...]) -> str:
    if value not in kinds:
        raise ValueError(f"{value!r} is not a known kind; use one of: {', '.join(kinds)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HUMAN_RATING_FIELDS = ("rater", "image", "dimension", "value", "scale_min", "scale_max")


class HumanRatingsConfig(_Strict):
    """Rater-level ratings of a dataset's images (long format: one row per rater x image x dimension)."""

    # CSV or Parquet file, relative to the config file.
    location: str
    # Renames {field: column in the file}; fields: rater, image, dimension, value, scale_min, scale_max.
    columns: dict[str, str] = Field(default_factory=dict)
    # Scale of numeric dimensions for rows without scale_min / scale_max columns (or values).
    scale: tuple[float, float] = (1.0, 9.0)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(HUMAN_RATING_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}; map fields {', '.join(HUMAN_RATING_FIELDS)} "
                f"to column names, e.g. {{rater: participant, image: filepath}}"
            )
        return value

    @field_validator("scale")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError(f"the low end must be below the high end, e.g. [1, 9]; got {list(value)}")
        return value


class HumanAgreementConfig(_Strict):
    """Per-image share of validation raters who chose the intended expression (e.g. RADIATE's
    validation data; its layout is not known here, so any per-image file maps its columns)."""

    # CSV or Parquet file, relative to the config file.
    location: str
    # Renames {field: column in the file}; fields: image, agreement (share 0..1), n_raters (optional).
    columns: dict[str, str] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"image", "agreement", "n_raters"})
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; map fields image, agreement, n_raters "
                             f"to column names, e.g. {{image: file, agreement: percent_correct}}")
        return value


class DatasetConfig(_Strict):
    name: str
    kind: str  # a key of inference.kinds.DATASET_ADAPTERS
    # Local copy of the dataset (directory, or manifest file for kind=manifest). Relative
    # paths are resolved against the config file's directory.
    location: str | None = None
    # Label vocabulary of the dataset; rows of dbt/seeds/emotion_label_map.csv with this
    # label_set map its labels to the canonical ones. Defaults to the dataset kind.
    label_set: str | None = None
    # Face images may be sent to external APIs only when this is true (model-runner issue).
    allow_external_apis: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    # Optional human ratings of the dataset's images (-> raw.human_ratings).
    human_ratings: HumanRatingsConfig | None = None
    # Optional per-image human agreement with the intended expression (-> extra.human_agreement).
    human_agreement: HumanAgreementConfig | None = None
    # What every model that reads images receives (inference.preprocessing): crop, size, face
    # detector. None: the kind's default (presets.yaml), else the images as stored.
    preprocessing: PreprocessingConfig | None = None
    # The seed papers' name for this dataset (papers.*); absent: the paper's name spelled alike
    # (papers.paper_key) or a row of the seed published_aliases.
    paper_name: PaperName | None = None

    @field_validator("kind")
    @classmethod
    def _registered_dataset_kind(cls, value: str) -> str:
        return _known_kind(value, DATASET_KINDS)

    @field_validator("paper_name", mode="before")
    @classmethod
    def _spelled_paper_name(cls, value: Any) -> PaperName | None:
        return paper_name(value)

    @property
    def effective_label_set(self) -> str:
        return self.label_set or ("canonical" if self.kind in GENERIC_DATASET_KINDS else self.kind)


class FrameSampling(_Strict):
    """How a model that takes images sees a video clip (`models.<name>.frames`): `middle` (the
    default: k = 1) or `{k: 5}`, k evenly spaced frames whose answers are put to a majority vote
    (inference/models/frame_vote.py)."""

    k: int = Field(1, ge=1, le=100)

    @property
    def label(self) -> str | dict[str, int]:
        """As written in the config, for the answers' preprocessing record."""
        return "middle" if self.k == 1 else {"k": self.k}


class ModelConfig(_Strict):
    name: str
    kind: str  # a key of inference.kinds.MODEL_ADAPTERS
    # What sort of model it is (inference.kinds.MODEL_FAMILIES: fer, vlm, clip, other); the
    # kind's default (DEFAULT_MODEL_FAMILY), required for `imported`. Strength inversion
    # compares the families.
    family: str | None = Field(None, validate_default=True)
    version: str
    # Poll a provider for new versions of this model (see inference.watch).
    watch: WatchConfig | None = None
    # Re-evaluate this (pinned) version on a cron schedule, e.g. "0 3 * * 1" for a `latest`
    # alias that changes silently; each run is a snapshot version "<version>+<YYYYMMDDHHMM>".
    reevaluate_cron: str | None = None
    # Evaluate only on these datasets (default: every configured dataset).
    datasets: tuple[str, ...] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # Video clips: which frames a model that takes images answers on (None: `middle`, and a
    # model that takes clips -- gemini -- gets the clip itself).
    frames: FrameSampling | None = None
    # The seed papers' column this model is set beside (papers.*): exact name or {pattern: ...}.
    # Absent: only a seed published_aliases row naming this exact version matches -- never the
    # model's name, which a user chooses freely (a `gpt4o` running gpt-4o-mini is not GPT-4o).
    paper_name: PaperName | None = None

    @field_validator("frames", mode="before")
    @classmethod
    def _frames_spelling(cls, value: Any) -> Any:
        if value == "middle":
            return {"k": 1}
        if value is None or isinstance(value, (dict, FrameSampling)):
            return value
        raise ValueError(f"{value!r}: use 'middle' (the middle frame) or {{k: 5}} (5 evenly spaced "
                         f"frames, majority vote)")

    @field_validator("kind")
    @classmethod
    def _registered_model_kind(cls, value: str) -> str:
        return _known_kind(value, MODEL_KINDS)

    @field_validator("paper_name", mode="before")
    @classmethod
    def _spelled_paper_name(cls, value: Any) -> PaperName | None:
        return paper_name(value)

    @field_validator("family")
    @classmethod
    def _declared_family(cls, value: str | None, info: ValidationInfo) -> str:
        return model_family(str(info.data.get("kind")), value)

    @field_validator("version")
    @classmethod
    def _plain_version(cls, value: str) -> str:
        if not _VERSION_RE.match(value):
            raise ValueError(
                "use letters, digits and . _ + - only (it becomes part of a partition key)"
            )
        return value

    @property
    def partition_key(self) -> str:
        return model_partition_key(self.name, self.version)

    @property
    def provider_version(self) -> str:
        """The version without a "+<snapshot>" suffix: what the provider calls the model."""
        return self.version.split("+", 1)[0]

    @field_validator("reevaluate_cron")
    @classmethod
    def _five_field_cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError("use a 5-field cron expression, e.g. '0 3 * * 1' (Mondays 03:00)")
        return value

    def covers(self, dataset: str) -> bool:
        """Whether this model is evaluated on `dataset`: the ones listed in `datasets:` (all
        when absent), and for an imported model only those it has a file for."""
        if self.datasets is not None and dataset not in self.datasets:
            return False
        if self.kind == "imported":
            files = self.options.get("files")
            return isinstance(files, dict) and dataset in files
        return True


GROUPING_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\*[a-z][a-z0-9_]*)?")


class StatisticsConfig(_Strict):
    alpha: float = Field(0.05, gt=0, lt=1)
    min_cell_n: int = Field(10, ge=1)
    # race, gender, race_gender, age (needs bins), any key of the images' `extra` (a manifest or
    # kind column), or "a*b" intersecting two of these (dbt macro unpivot_groupings).
    groupings: tuple[str, ...] = ("race", "gender", "race_gender")
    # Bin edges per numeric attribute, e.g. {age: [0, 30, 45, 120]}: value in [low, high) -> "low-high".
    bins: dict[str, tuple[float, ...]] = Field(default_factory=dict)
    # multipletests methods: the first fills p_adjusted, the others get their own columns.
    corrections: tuple[str, ...] = ("holm", "fdr_bh")
    bootstrap_resamples: int = Field(200, ge=0)
    # Which tests are adjusted together (one family; its m = the tests that have a p-value):
    #   "grouping": model x version x dataset x protocol x grouping, across the true emotions
    #               (the pooled emotion 'all' is its own family: it re-tests the same images);
    #   "emotion":  model x version x dataset x protocol x grouping x true emotion (the old,
    #               narrower families: a two-level grouping then has m = 1 per emotion).
    family: Literal["grouping", "emotion"] = "grouping"
    # Multiplicity control of the bias regression gate over all gaps of one version pair.
    gate_correction: Literal["holm", "fdr_bh"] = "holm"
    # maj@k ties: "status" = the image gets answer_status 'tie' (no predicted emotion; an error
    # in intent-to-treat accuracy); "random" = one of the tied emotions, chosen by md5 of
    # (tie_seed, slice, image, emotion), so the choice is random but reproducible.
    tie_policy: Literal["status", "random"] = "status"
    tie_seed: int = 0

    @field_validator("corrections")
    @classmethod
    def _known_corrections(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"holm", "fdr_bh", "bonferroni", "sidak", "holm-sidak", "hommel", "fdr_by"}
        unknown = [m for m in value if m not in known]
        if unknown or not value:
            raise ValueError(f"use one or more of {sorted(known)}; got {list(value)}")
        return value

    @field_validator("groupings")
    @classmethod
    def _known_groupings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [g for g in value if not GROUPING_PATTERN.fullmatch(g) or g == "all"]
        if bad:
            raise ValueError(f"a grouping is race, gender, race_gender, age, a key of the images' extra columns "
                             f"(letters, digits, _), or 'a*b' of two of them; got {bad}")
        return value

    @field_validator("bins")
    @classmethod
    def _increasing_edges(cls, value: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        for name, edges in value.items():
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"bins.{name}: give at least two increasing edges, e.g. [0, 30, 45, 120]; got "
                                 f"{list(edges)}")
        return value

    @model_validator(mode="after")
    def _age_is_binned(self) -> "StatisticsConfig":
        used = {part for g in self.groupings for part in g.split("*")}
        if "age" in used and "age" not in self.bins:
            raise ValueError("statistics.groupings uses 'age': give its bin edges in statistics.bins.age, "
                             "e.g. bins: {age: [0, 30, 45, 120]}")
        return self

    def bin_labels(self) -> dict[str, list[list]]:
        """{attribute: [[low, high, label], ...]}: the bins as SQL and `plan` label them."""
        def text(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else str(x)
        return {name: [[lo, hi, f"{text(lo)}-{text(hi)}"] for lo, hi in zip(edges, edges[1:])]
                for name, edges in self.bins.items()}


def dbt_vars(statistics: StatisticsConfig) -> dict[str, Any]:
    """The statistics settings SQL needs, as dbt `--vars`, so that the marts' Wilson / Katz
    intervals, groupings and maj@k tie rule are those Python uses (one source: benchmark.yaml).
    The SQL defaults (dbt/macros) equal StatisticsConfig()'s."""
    from scipy.stats import norm  # lazy: only the dbt asset needs it

    return {
        "ci_z": float(norm.ppf(1 - statistics.alpha / 2)),
        "groupings": list(statistics.groupings),
        "grouping_bins": statistics.bin_labels(),
        "tie_policy": statistics.tie_policy,
        "tie_seed": statistics.tie_seed,
    }


class AutomationConfig(_Strict):
    """How often the daemon looks for work (`automation:` in benchmark.yaml). Shorter intervals
    start work sooner and cost the daemon CPU at every tick (tests use a few seconds)."""

    # configured_model_versions: pinned versions without answers on a dataset they cover
    sensor_interval_s: int = Field(60, ge=1)
    # declarative automation: a slice's marts, statistics and figures after its raw answers
    automation_interval_s: int = Field(30, ge=1)


class BenchmarkConfig(_Strict):
    path: Path
    warehouse: Path
    reports_dir: Path
    cache_dir: Path
    datasets: dict[str, DatasetConfig]
    models: dict[str, ModelConfig]
    statistics: StatisticsConfig = StatisticsConfig()
    automation: AutomationConfig = AutomationConfig()
    # None: the embedded layout (raw tables in the warehouse file). A directory (or URL): each
    # evaluation writes its slice as Parquet there, without the warehouse's write lock.
    raw_slices: str | None = None
    # A dagster.yaml that fer-warehouse copies into $DAGSTER_HOME (e.g. deploy/dagster.yaml:
    # Postgres storage, Celery workers); None: the embedded instance (SQLite in $DAGSTER_HOME).
    dagster_instance: Path | None = None
    # Pooled analyses: group name -> member datasets (Chhua et al. pool RADIATE and Tarr); the
    # marts' *_pooled models answer for each group as one dataset (dbt var `dataset_groups`).
    dataset_groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def resolve(self, location: str) -> Path:
        """Resolve a path written in the config relative to the config file."""
        path = Path(os.path.expanduser(location))
        return path if path.is_absolute() else (self.path.parent / path).resolve()

    def model_for_partition(self, key: str) -> ModelConfig:
        for model in self.models.values():
            if model.partition_key == key:
                return model
        name, _, version = key.partition("@")
        if name in self.models:
            return self.models[name].model_copy(update={"version": version})
        raise ConfigError(
            f"model partition {key!r} names no model in {self.path}; add a model "
            f"named {name!r} under 'models:' or delete the partition"
        )


def model_partition_key(name: str, version: str) -> str:
    return f"{name}@{version}"


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)).resolve()


def load_config(path: str | Path | None = None) -> BenchmarkConfig:
    cfg_path = Path(path).resolve() if path else config_path()
    if not cfg_path.is_file():
        raise ConfigError(
            f"benchmark config {cfg_path} does not exist; create it (see docs/configuration.md) "
            f"or point {CONFIG_ENV} at one"
        )
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{cfg_path}: not valid YAML: {exc}") from exc
    return parse_config(raw, cfg_path)


def parse_config(raw: Any, cfg_path: Path) -> BenchmarkConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: the top level must be a mapping with 'datasets:' and 'models:'")
    known = {"warehouse", "reports_dir", "cache_dir", "datasets", "models", "statistics", "raw_slices",
             "dagster_instance", "dataset_groups", "automation"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{cfg_path}: unknown key {key!r}; allowed top-level keys: {', '.join(sorted(known))}"
            )
    base = cfg_path.parent
    warehouse = os.environ.get(WAREHOUSE_ENV) or raw.get("warehouse") or DEFAULT_WAREHOUSE
    datasets = _named_section(raw, "datasets", cfg_path, DATASET_KINDS)
    models = _named_section(raw, "models", cfg_path, MODEL_KINDS)
    dataset_cfgs = {
        n: _build(DatasetConfig, f"datasets.{n}", cfg_path, **{**body, "name": n})
        for n, body in datasets.items()
    }
    model_cfgs = {
        n: _build(ModelConfig, f"models.{n}", cfg_path, **{**body, "name": n})
        for n, body in models.items()
    }
    statistics = _build(StatisticsConfig, "statistics", cfg_path, **(raw.get("statistics") or {}))
    automation = _build(AutomationConfig, "automation", cfg_path, **(raw.get("automation") or {}))
    for model in model_cfgs.values():
        if model.kind in VLM_KINDS:
            # Lazy: inference.models imports this module (a cycle at import time).
            from inference.models.vlm_options import vlm_options

            vlm_options(model, cfg_path)
        unknown = sorted(set(model.datasets or ()) - set(dataset_cfgs))
        if unknown:
            raise ConfigError(
                f"{cfg_path}: models.{model.name}.datasets: {unknown} are not configured datasets; "
                f"use some of {sorted(dataset_cfgs)} or remove the key to evaluate on all"
            )
    return BenchmarkConfig(
        path=cfg_path,
        warehouse=_under(base, warehouse),
        reports_dir=_under(base, raw.get("reports_dir") or "data/reports"),
        cache_dir=_under(base, raw.get("cache_dir") or "data/cache"),
        datasets=dataset_cfgs,
        models=model_cfgs,
        statistics=statistics,
        automation=automation,
        raw_slices=_raw_slices(base, os.environ.get(RAW_SLICES_ENV) or raw.get("raw_slices")),
        dagster_instance=_under(base, raw["dagster_instance"]) if raw.get("dagster_instance") else None,
        dataset_groups=_dataset_groups(raw.get("dataset_groups"), dataset_cfgs, cfg_path),
    )


def _dataset_groups(value: Any, datasets: dict[str, DatasetConfig], cfg_path: Path) -> dict[str, tuple[str, ...]]:
    """`dataset_groups: {radiate_tarr: [radiate, tarr]}`: each group names two or more configured
    datasets and is not itself a dataset's name (its pooled rows carry it as `dataset`)."""
    if value is None:
        return {}
    example = "e.g. 'dataset_groups: {radiate_tarr: [radiate, tarr]}'"
    if not isinstance(value, dict):
        raise ConfigError(f"{cfg_path}: dataset_groups: must map a group name to a list of datasets, {example}")
    groups = {}
    for name, members in value.items():
        where = f"{cfg_path}: dataset_groups.{name}"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{where}: name must be lower-case letters, digits and '_' starting with a letter")
        if name in datasets:
            raise ConfigError(f"{where}: {name!r} is also a dataset's name; pooled rows carry the group's name "
                              f"as their dataset, so give the group another name")
        if not isinstance(members, list) or len(set(map(str, members))) < 2 or len(set(members)) != len(members):
            raise ConfigError(f"{where}: list two or more different datasets to pool, {example}; got {members!r}")
        unknown = [m for m in members if m not in datasets]
        if unknown:
            raise ConfigError(f"{where}: {unknown} are not configured datasets; use some of {sorted(datasets)}")
        groups[name] = tuple(members)
    return groups


def _raw_slices(base: Path, value: str | None) -> str | None:
    """The slice store's root: a URL as written, a path relative to the config file."""
    if not value:
        return None
    return str(value) if "://" in str(value) else str(_under(base, str(value)))


def _build(model: type[BaseModel], where: str, cfg_path: Path, **body: Any) -> Any:
    try:
        return model(**body)
    except ValidationError as exc:
        raise ConfigError(explain_errors(exc, cfg_path, where)) from None


def _under(base: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else (base / path).resolve()


def _named_section(
    raw: dict[str, Any], section: str, cfg_path: Path, kinds: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    body = raw.get(section)
    if not isinstance(body, dict) or not body:
        raise ConfigError(
            f"{cfg_path}: '{section}:' must map names to entries, e.g. "
            f"'{section}: {{my_{section[:-1]}: {{kind: {kinds[0]}, ...}}}}'"
        )
    for name, entry in body.items():
        where = f"{cfg_path}: {section}.{name}"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(
                f"{where}: name must be lower-case letters, digits and '_' starting with a letter"
            )
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping with at least 'kind:'")
        if entry.get("kind") not in kinds:
            raise ConfigError(
                f"{where}.kind: {entry.get('kind')!r} is not a known kind; use one of: {', '.join(kinds)}"
            )
    return body


def explain_errors(exc: ValidationError, cfg_path: Path, where: str,
                   fixes: dict[str, str] | None = None) -> str:
    """One line per pydantic error: file, key path and a fix; `fixes` maps an error type to a
    kind's own hint (and makes validator messages read as the fix itself)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if fixes and err["type"] in fixes:
            hint = fixes[err["type"]]
        elif err["type"] == "extra_forbidden":
            hint = "unknown key; remove it or check its spelling"
        elif err["type"] == "missing":
            hint = "required key is missing; add it"
        else:
            hint = str(err["msg"])
            if fixes is not None:  # a kind's options: the validator's own sentence is the fix
                hint = hint.removeprefix("Value error, ")
        lines.append(f"{cfg_path}: {where}.{loc}: {hint}")
    return "\n".join(lines)
