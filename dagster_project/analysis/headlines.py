"""Headline numbers for asset metadata: what a researcher reads first on an asset's page.

Pure formatting of results computed elsewhere (marts.group_accuracy, stats.error_rate_ztests);
nothing is re-estimated here. Every number keeps its interval, denominator and family.
"""

from __future__ import annotations

import pandas as pd

HEADLINE_GROUPINGS = ("all", "race", "gender")
NO_SIGNIFICANT = "none: no pair of groups differs significantly after the family's correction"


def accuracy_by_group_table(accuracy: pd.DataFrame, groupings: tuple[str, ...] = HEADLINE_GROUPINGS) -> str:
    """Markdown: accuracy with its Wilson 95 % interval and denominator per group, all emotions
    pooled, for each protocol of a slice of marts.group_accuracy."""
    rows = accuracy[(accuracy["true_emotion"] == "all") & accuracy["grouping"].isin(groupings)]
    if rows.empty:
        return "no answered images in this slice"
    order = {name: i for i, name in enumerate(groupings)}
    rows = rows.assign(_order=rows["grouping"].map(order)).sort_values(["protocol", "_order", "group_value"])
    lines = ["| protocol | grouping | group | n | accuracy | 95 % CI (Wilson) |", "|---|---|---|---:|---:|---|"]
    for row in rows.itertuples(index=False):
        interval = (f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" if pd.notna(row.ci_low) else "n/a")
        accuracy_text = f"{row.accuracy:.3f}" if pd.notna(row.accuracy) else "n/a"
        lines.append(f"| {row.protocol} | {row.grouping} | {row.group_value} | {int(row.n)} | "
                     f"{accuracy_text} | {interval} |")
    return "\n".join(lines)


def largest_significant_disparity(tests: pd.DataFrame) -> str:
    """The significant pair of groups (after the family's correction, both cells at least
    min_n) with the largest error-rate difference, with its interval, denominators and family."""
    if tests.empty:
        return NO_SIGNIFICANT
    usable = tests[tests["significant"].fillna(False).astype(bool) & ~tests["below_min_n"].astype(bool)]
    if usable.empty:
        return f"{NO_SIGNIFICANT} ({len(tests)} tests)"
    top = usable.loc[usable["difference"].abs().idxmax()]
    return (
        f"{top['grouping']} ({top['true_emotion']}): error rate {top['group_a']} {top['error_rate_a']:.3f} "
        f"({int(top['errors_a'])}/{int(top['n_a'])}) vs {top['group_b']} {top['error_rate_b']:.3f} "
        f"({int(top['errors_b'])}/{int(top['n_b'])}), difference {top['difference']:+.3f} "
        f"[95 % CI {top['ci_low']:+.3f}, {top['ci_high']:+.3f}], p_adjusted {top['p_adjusted']:.3g} "
        f"({top['correction']} within family {top['family']!r}, {int(top['family_m'])} tests)"
    )
