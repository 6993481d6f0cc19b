"""`paper_name:` on a model or dataset of benchmark.yaml: which column of the seed papers it is
set beside in papers.* -- the paper's name exactly (`paper_name: GPT-4o`) or a pattern the whole
name matches (`paper_name: {pattern: 'Gemini 1\\.5 .*'}`; DuckDB regexp_full_match, RE2 syntax).
The papers views read them as the dbt var `paper_names` (dbt/macros/papers.sql, name_matches)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

USE = "use the paper's name (paper_name: GPT-4o) or a pattern (paper_name: {pattern: 'Gemini 1\\\\.5 .*'})"


class PaperNamePattern(BaseModel):
    """`paper_name: {pattern: '...'}` (checked to compile by `paper_name`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pattern: str


PaperName = str | PaperNamePattern


def paper_name(value: Any) -> PaperName | None:
    """A `paper_name:` as written -> the name, or a PaperNamePattern whose pattern compiles;
    anything else a ValueError phrased as the fix."""
    if value is None or isinstance(value, (str, PaperNamePattern)):
        return value
    if isinstance(value, dict) and set(value) == {"pattern"} and isinstance(value["pattern"], str):
        try:
            re.compile(value["pattern"])
        except re.error as exc:
            raise ValueError(f"pattern {value['pattern']!r} is not a regular expression ({exc}); {USE}") from None
        return PaperNamePattern(pattern=value["pattern"])
    raise ValueError(f"{value!r}: {USE}")


def paper_names(models: Mapping[str, Any], datasets: Mapping[str, Any]) -> dict[str, dict]:
    """The declared paper names as the dbt var `paper_names`:
    {'models': {name: {'exact': ...} | {'pattern': ...}}, 'datasets': {...}} (entries: configs
    with a `paper_name` attribute)."""
    def spelled(value: PaperName) -> dict[str, str]:
        return {"pattern": value.pattern} if isinstance(value, PaperNamePattern) else {"exact": value}

    return {section: {name: spelled(entry.paper_name) for name, entry in entries.items() if entry.paper_name}
            for section, entries in (("models", models), ("datasets", datasets))}


__all__ = ["PaperName", "PaperNamePattern", "paper_name", "paper_names"]
