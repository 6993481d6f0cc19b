"""The journeys' own rule: they drive the product only as a user does (the CLI, benchmark.yaml,
the UI, SQL, loopback providers in their own processes), so neither they nor the support modules
they import may import `dagster_project` or `inference`."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PRODUCT = ("dagster_project", "inference")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_journey_imports_the_product() -> None:
    to_read = sorted(Path(__file__).parent.glob("*.py"))
    seen: set[Path] = set()
    offenders = []
    while to_read:
        path = to_read.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            if module.split(".")[0] in PRODUCT:
                offenders.append(f"{path.relative_to(TESTS)} imports {module}")
            elif module.startswith("tests."):  # follow the support modules a journey uses
                to_read.append(TESTS.parent / (module.replace(".", "/") + ".py"))
    assert len(seen) > 5 and not offenders, offenders
