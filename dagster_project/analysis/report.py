"""The HTML report a person reads: warehouse tables and figures in one self-contained file.

Pure: frames and PNG bytes in, an HTML string out (no SQL, no files, no Dagster). The page
needs nothing outside itself -- figures are inlined as base64 `data:` URLs, the style is
inline, there is no script -- so it opens offline and can be mailed as one file.

What it shows, in order:
0. the summary (analysis/report_summary.py): per slice the largest disparities that survive the
   correction, accuracy by group (people beside models where the warehouse has them), what
   changed since the previous version -- the first screen;
1. how to read it: families, multiplicity correction, intervals and denominators, from the
   statistics settings and, per table and measure, the methods the rows themselves record in
   `detail` (so the notes cannot drift from what was computed);
2. accuracy per model version x dataset (over answered images and intent-to-treat), then per
   demographic group (marts.group_accuracy, Wilson intervals); the human baseline beside the
   models where a dataset ships one (marts.human_category_agreement), with what each human
   number means;
3. every stats.* table in the common result shape (results.RESULT_COLUMNS): estimate with its
   interval, p-value, adjusted p-value with its correction and family size m, n and the
   min-n flag; rows sorted by adjusted p-value, every row (in a collapsed <details> section);
4. the seed papers' tables (schema papers), when the warehouse has them, in the paper's own
   grid (analysis/paper_grid.py): ours / the paper's value, differences outside rounding marked;
5. the figures.

At scale (hundreds of slices) the page keeps a size a browser opens: each table shows its
first `max_rows` rows in that order and names the SQL for the rest, and figures past the
caller's budget are links to their files instead of data: URLs (reporting.py sets both).

The template is a Jinja2 file (templates/report.html.j2) with autoescaping on; tables are
rendered by pandas (`to_html`, cells escaped).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import jinja2
import pandas as pd
from markupsafe import Markup

from dagster_project.analysis.paper_grid import GRID_NOTE, has_difference_outside_rounding, paper_grid
from dagster_project.analysis.report_format import fmt as _fmt
from dagster_project.analysis.report_format import interval as _interval
from dagster_project.analysis.report_format import p_text as _p
from dagster_project.analysis.report_human import human_baseline_table, human_meanings
from dagster_project.analysis.report_summary import SliceSummary, slice_summaries
from dagster_project.analysis.results import RESULT_COLUMNS

# Methods recorded per row in `detail` that the notes collect (key -> what it says).
METHOD_KEYS = ("ci_method", "denominator", "method", "average", "test", "estimate", "inference")
OVERVIEW_COLUMNS = ["model", "model_version", "dataset", "protocol", "n_images", "n_answered", "accuracy",
                    "ci_low", "ci_high", "accuracy_itt", "itt_ci_low", "itt_ci_high", "coverage"]


@dataclass(frozen=True)
class Figure:
    name: str  # file name, shown as the caption
    png: bytes | None  # None: linked, not inlined (the report's figure budget is spent)
    href: str = ""  # the file, relative to the report

    @property
    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png or b"").decode("ascii")


@dataclass(frozen=True)
class Settings:
    """What the notes say about families and thresholds (inference.config.StatisticsConfig)."""

    alpha: float = 0.05
    min_cell_n: int = 10
    corrections: tuple[str, ...] = ("holm", "fdr_bh")
    family: str = "grouping"
    bootstrap_resamples: int = 200
    tie_policy: str = "status"
    gate_correction: str = "holm"
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    key: str  # schema.table
    title: str
    html: Markup
    note: str = ""
    rows: int = 0


FAMILY_TEXT = {
    "grouping": "one family per model x version x dataset x protocol x grouping (race, gender or race x gender), "
                "across the true emotions; the pooled emotion 'all' is a family of its own (it re-tests the "
                "same images)",
    "emotion": "one family per model x version x dataset x protocol x grouping x true emotion (narrow: a "
               "two-level grouping then has m = 1 per emotion)",
}


def _table_html(frame: pd.DataFrame, index: bool = False) -> Markup:
    """Cells are escaped by pandas; the result is marked safe for the template."""
    if frame.empty:
        return Markup("<p class='empty'>no rows</p>")
    return Markup(frame.to_html(index=index, escape=True, na_rep="", border=0, classes="data"))


def accuracy_overview(group_accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per model version x dataset x protocol: accuracy over answered images and
    intent-to-treat accuracy over every image, each with its Wilson interval."""
    if group_accuracy.empty:
        return pd.DataFrame(columns=OVERVIEW_COLUMNS)
    pooled = group_accuracy[(group_accuracy["grouping"] == "all") & (group_accuracy["true_emotion"] == "all")]
    frame = pooled.reindex(columns=OVERVIEW_COLUMNS).sort_values(OVERVIEW_COLUMNS[:4])
    return pd.DataFrame({
        **{c: frame[c] for c in OVERVIEW_COLUMNS[:6]},
        "accuracy (answered) [95 % CI]": [_interval(r.accuracy, r.ci_low, r.ci_high) for r in frame.itertuples()],
        "accuracy ITT [95 % CI]": [_interval(r.accuracy_itt, r.itt_ci_low, r.itt_ci_high) for r in frame.itertuples()],
        "answered share": frame["coverage"].map(_fmt),
    })


def group_accuracy_table(group_accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per demographic group (all emotions pooled): n, accuracy and ITT accuracy with intervals."""
    if group_accuracy.empty:
        return pd.DataFrame()
    rows = group_accuracy[(group_accuracy["grouping"] != "all") & (group_accuracy["true_emotion"] == "all")]
    rows = rows.sort_values(["model", "model_version", "dataset", "protocol", "grouping", "group_value"])
    return pd.DataFrame({
        **{c: rows[c] for c in ("model", "model_version", "dataset", "protocol", "grouping", "group_value",
                                "n_images", "n_answered")},
        "accuracy (answered) [95 % CI]": [_interval(r.accuracy, r.ci_low, r.ci_high) for r in rows.itertuples()],
        "accuracy ITT [95 % CI]": [_interval(r.accuracy_itt, r.itt_ci_low, r.itt_ci_high) for r in rows.itertuples()],
        **_by_identity(rows),
    })


def _by_identity(rows: pd.DataFrame) -> dict[str, list[str]]:
    """The cluster-aware accuracy interval (Wilson at n / design effect) with the people and
    the design effect behind it; nothing for marts written before issue 22."""
    if "cluster_ci_low" not in rows:
        return {}
    return {"accuracy (answered), people as units [95 % CI]": [
        _interval(r.accuracy, r.cluster_ci_low, r.cluster_ci_high)
        + (f" ({int(r.n_clusters)} people, deff {_fmt(r.design_effect)})" if pd.notna(r.design_effect) else "")
        for r in rows.itertuples()]}


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Family-adjusted tests first, smallest adjusted p first; then the other rows in key order
    (a raw p-value of an unadjusted test, e.g. kappa = 0, says little about bias)."""
    keys = [c for c in ("model", "model_version", "dataset", "protocol", "grouping", "subset_kind", "subset",
                        "measure", "true_emotion") if c in frame]
    adjusted = pd.to_numeric(frame["p_adjusted"], errors="coerce") if "p_adjusted" in frame else None
    if adjusted is None:
        return frame.sort_values(keys, kind="stable") if keys else frame
    return frame.assign(_adj=adjusted).sort_values(["_adj", *keys], na_position="last", kind="stable")


def _significant(p_adjusted, below_min_n, alpha: float) -> str:
    if p_adjusted is None or pd.isna(p_adjusted):
        return ""
    if not pd.isna(below_min_n) and bool(below_min_n):
        return "n < min"
    return "yes" if p_adjusted < alpha else "no"


def result_table(frame: pd.DataFrame, max_rows: int | None = None, alpha: float = 0.05) -> tuple[pd.DataFrame, str]:
    """A stats.* table in the common shape, readable: family-adjusted tests first (smallest
    adjusted p first), every row unless `max_rows` is given; returns the rows and a note.
    The columns a reader reads first (what, estimate, p adjusted) come first, so they are on
    screen without scrolling; the slice keys last."""
    if frame.empty:
        return pd.DataFrame(), "0 rows"
    shown = _ordered(frame).head(max_rows) if max_rows is not None else _ordered(frame)
    extra = [c for c in frame.columns if c not in RESULT_COLUMNS and c != "_adj"]
    out = pd.DataFrame({
        **{c: shown[c] for c in ("subset_kind", "subset")},
        "measure": shown["measure"],
        "estimate [CI]": [_interval(r.estimate, r.ci_low, r.ci_high) for r in shown.itertuples()],
        "n": shown["n"],
        "p adjusted": shown["p_adjusted"].map(_p),
        f"significant (alpha {alpha})": [_significant(r.p_adjusted, r.below_min_n, alpha) for r in shown.itertuples()],
        "family (m)": [f"{r.family} (m={r.family_m})" if r.family and not pd.isna(r.family_m) else (r.family or "")
                       for r in shown.itertuples()],
        "p": shown["p_value"].map(_p),
        "correction": shown["correction"],
        "n < min": shown["below_min_n"],
        **{c: shown[c] for c in extra},
        **{c: shown[c] for c in ("model", "model_version", "dataset", "protocol")},
    })
    return out, _cut_note(len(shown), len(frame))


def plain_table(frame: pd.DataFrame, max_rows: int | None = None) -> tuple[pd.DataFrame, str]:
    """A table in its own shape (e.g. stats.error_rate_ztests): its columns as they are, minus
    `detail`, ordered like result_table, every row unless `max_rows` is given."""
    ordered = _ordered(frame)
    shown = (ordered.head(max_rows) if max_rows is not None else ordered).drop(columns=["_adj", "detail"],
                                                                               errors="ignore")
    for column in ("p_value", "p_adjusted", "p_bh"):
        if column in shown:
            shown[column] = pd.to_numeric(shown[column], errors="coerce").map(_p)
    return shown, _cut_note(len(shown), len(frame))


def _cut_note(shown: int, total: int) -> str:
    return f"{shown} of {total} rows shown: family-adjusted tests, smallest adjusted p first" if total > shown \
        else f"{total} rows"


def recorded_methods(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per table and measure, the distinct methods its rows record in `detail` (intervals,
    denominators, tests): the notes quote the data, not a description of it."""
    rows = []
    for key, frame in sorted(tables.items()):
        if not {"measure", "detail"} <= set(frame.columns) or frame.empty:
            continue
        for measure, part in frame.groupby("measure", sort=True):
            seen: dict[str, set[str]] = {}
            for text in part["detail"].dropna().unique()[:500]:  # details repeat; a sample suffices
                try:
                    detail = json.loads(text) if text else {}
                except (TypeError, ValueError):
                    continue
                for k in METHOD_KEYS:
                    if isinstance(detail.get(k), str):
                        seen.setdefault(k, set()).add(detail[k])
            families = part["family"].replace("", pd.NA).dropna() if "family" in part else pd.Series(dtype=str)
            m = pd.to_numeric(part.get("family_m"), errors="coerce").dropna() if "family_m" in part else pd.Series()
            rows.append({
                "table": key, "measure": measure, "rows": len(part),
                "methods": "; ".join(f"{k}: {' | '.join(sorted(v))}" for k, v in sorted(seen.items())),
                "families": f"{families.nunique()} (m {int(m.min())}-{int(m.max())})" if len(m) else
                            (str(families.nunique()) if len(families) else "not adjusted"),
                "corrections": ", ".join(sorted(set(part.get("correction", pd.Series(dtype=str))) - {""})),
            })
    return pd.DataFrame(rows)


def method_notes(settings: Settings) -> list[tuple[str, str]]:
    """The fixed notes: how families, intervals and denominators are defined."""
    first, *others = settings.corrections
    return [
        ("Families", f"{FAMILY_TEXT.get(settings.family, settings.family)}. m = the tests of a family that have a "
                     "p-value (untestable pairs, e.g. with a zero count or below min n, are not counted). "
                     "McNemar tests between versions: one family per dataset x protocol."),
        ("Multiplicity", f"'p adjusted' is {first} within the family"
                         + (f"; {', '.join(others)} is stored in its own column of the table" if others else "")
                         + f". Significance reads p adjusted < alpha = {settings.alpha}."),
        ("Small cells", f"'n < min' marks estimates resting on fewer than min_cell_n = {settings.min_cell_n} "
                        "units; their p-values are not to be read as evidence."),
        ("Denominators", "accuracy (answered) counts only images the model answered; accuracy ITT "
                         "(intent-to-treat) counts every image and scores no face found, refusals, unparsable "
                         "answers and maj@k ties as errors, so a face detector that misses one group cannot make "
                         f"a model look fair. maj@k ties: tie_policy = {settings.tie_policy}."),
        ("Intervals", "accuracy: Wilson score 95 % (SQL, marts.group_accuracy); error-rate ratios: Katz log "
                      f"interval; macro F1: percentile bootstrap over images ({settings.bootstrap_resamples} "
                      "resamples, seeded); Cohen's kappa: asymptotic Wald 95 %. Each table's rows record their "
                      "own method below."),
        ("Repeated identities", "a person's images are not independent: where a dataset repeats identities, "
                                "the accuracy interval 'people as units', the z-tests' p (and p adjusted, "
                                "significance) and the ratios' intervals are cluster-aware (Rao-Scott: counts "
                                "divided by the design effect of the identity clustering; column inference = "
                                "rao_scott_identity); the naive values (images independent) stay in the "
                                "*_naive columns."),
        *settings.extra.items(),
    ]


def api_costs_table(run_costs: pd.DataFrame) -> pd.DataFrame:
    """marts.run_costs as shown: each slice's latest run, per delivery tier and in total."""
    if run_costs.empty:
        return run_costs
    keys = ["model", "model_version", "dataset"]
    return (run_costs.sort_values(keys + ["run_id", "service_tier"])
            .assign(cost_usd=lambda f: f["cost_usd"].map(lambda v: f"{v:.4f}"))
            [keys + ["run_id", "service_tier", "n_answers", "input_tokens", "output_tokens", "cost_usd"]]
            .reset_index(drop=True))


def _result_sections(tables: Mapping[str, pd.DataFrame], max_rows: int | None, alpha: float) -> list[Section]:
    """Every stats.* table: the common result shape through result_table, others as they are."""
    sections = []
    for key, frame in sorted(tables.items()):
        if not key.startswith("stats."):
            continue
        common = set(RESULT_COLUMNS) <= set(frame.columns)
        shown, note = result_table(frame, max_rows, alpha) if common else plain_table(frame, max_rows)
        if len(shown) < len(frame):
            note += f'; every row: fer-warehouse sql "select * from {key}"'
        sections.append(Section(key, key.removeprefix("stats.").replace("_", " "), _table_html(shown), note,
                                len(frame)))
    return sections


def _paper_sections(tables: Mapping[str, pd.DataFrame]) -> list[Section]:
    """Every papers.* table in the paper's own grid (paper_grid): ours / the paper's value per
    cell, the cells outside the paper's rounding counted in the note; every cell shown (the long
    form, one row per cell, is `fer-warehouse export papers.<table> --long`)."""
    sections = []
    for key, frame in sorted(tables.items()):
        if not key.startswith("papers."):
            continue
        off = has_difference_outside_rounding(frame)
        note = f"{len(frame)} cells; {off} outside the paper's rounding; {GRID_NOTE}"
        sections.append(Section(key, key.removeprefix("papers."), _table_html(paper_grid(frame, key), index=True),
                                note, len(frame)))
    return sections


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("dagster_project.analysis", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2")


def render_report(
    tables: Mapping[str, pd.DataFrame],
    figures: Sequence[Figure],
    settings: Settings,
    *,
    title: str = "FER bias warehouse report",
    generated_at: str = "",
    source: str = "",
    max_rows: int | None = None,
) -> str:
    """The report as one HTML string. `tables`: frames keyed "schema.table" (marts.group_accuracy,
    stats.*, papers.*; any may be missing); `figures`: PNGs to inline, or (png None) to link;
    `max_rows`: rows shown per table, the rest named in the table's note (None = every row)."""
    accuracy = tables.get("marts.group_accuracy", pd.DataFrame())
    human = tables.get("marts.human_category_agreement", pd.DataFrame())
    human_rows = human_baseline_table(human)
    groups = group_accuracy_table(accuracy)
    return _template().render(
        title=title, generated_at=generated_at, source=source, settings=settings,
        summaries=slice_summaries(tables, alpha=settings.alpha, min_cell_n=settings.min_cell_n,
                                  gate_correction=settings.gate_correction),
        table_html=_table_html,
        notes=method_notes(settings),
        recorded=_table_html(recorded_methods({k: v for k, v in tables.items() if k.startswith("stats.")})),
        overview=_table_html(accuracy_overview(accuracy)),
        groups=_table_html(groups.head(max_rows) if max_rows is not None else groups),
        groups_note=_cut_note(min(len(groups), max_rows if max_rows is not None else len(groups)), len(groups)),
        max_rows=max_rows,
        costs=_table_html(api_costs_table(tables.get("marts.run_costs", pd.DataFrame()))),
        human=_table_html(human_rows.head(max_rows) if max_rows is not None else human_rows) if not human.empty else None,
        human_note=f"{len(human_rows) if max_rows is None else min(len(human_rows), max_rows)} of {len(human_rows)} rows",
        human_meanings=human_meanings(human),
        results=_result_sections(tables, max_rows, settings.alpha),
        papers=_paper_sections(tables),
        figures=[f for f in figures if f.png is not None],
        linked_figures=[f for f in figures if f.png is None],
    )


__all__ = ["Figure", "Section", "Settings", "SliceSummary", "accuracy_overview", "api_costs_table", "group_accuracy_table",
           "method_notes",
           "plain_table", "recorded_methods", "render_report", "result_table"]
