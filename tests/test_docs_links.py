"""The README stays short and every link in it and in docs/ leads to a file that exists (issue 25:
the reference moved to docs/*.md pages, each linked)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")
README_MAX_LINES = 200


def _targets(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    return [a or b for a, b in LINK.findall(text)]


def _local(target: str) -> bool:
    return not re.match(r"^[a-z]+:", target) and not target.startswith("#")


def test_readme_is_short_and_links_every_docs_page():
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    linked = {(readme.parent / t.split("#")[0]).resolve() for t in _targets(readme) if _local(t)}
    pages = {page.resolve() for page in (REPO / "docs").glob("*.md")}
    assert pages and pages <= linked | {(REPO / "docs" / "README.md").resolve()}, sorted(map(str, pages - linked))


def test_every_local_link_resolves_to_a_file():
    broken = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in _targets(page):
            if _local(target) and not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []
