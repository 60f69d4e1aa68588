"""What pyproject.toml declares matches what the package imports."""

from __future__ import annotations

import ast
import re
import sys

from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PACKAGE = REPO / "selfinstruct"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _imported_modules() -> set[str]:
    """Return the top-level name of every module that some file of the package imports."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _distribution(requirement: str) -> str:
    """Return the distribution name of a requirement string (no extras, version or marker)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower()


def test_every_core_dependency_is_imported() -> None:
    imported = _imported_modules()
    for requirement in PYPROJECT["project"]["dependencies"]:
        module = _distribution(requirement).replace("-", "_")
        assert module in imported, f"{requirement} is declared but selfinstruct never imports it"


def test_the_reference_scorer_is_a_dev_dependency_only() -> None:
    core = {_distribution(r) for r in PYPROJECT["project"]["dependencies"]}
    dev = {_distribution(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert "rouge-score" not in core and "rouge-score" in dev
    assert "rouge_score" not in _imported_modules()


def test_bundled_seeds_state_the_project_licence_and_ship_it() -> None:
    from fnmatch import fnmatch

    from selfinstruct.seeds import SEED_FILES, license_path, load_seeds

    declared = PYPROJECT["project"]["license"]["text"]
    shipped = PYPROJECT["tool"]["setuptools"]["package-data"]["selfinstruct"]
    for language, name in SEED_FILES.items():
        # Our own seeds: the project's licence, stated in the sidecar the card reads.
        assert set(load_seeds(language=language).licenses()) == {declared}, name
        sidecar = license_path(REPO / "seeds" / name)
        assert sidecar.read_text(encoding="utf-8").splitlines()[0] == declared
        inside = f"data/seeds/{sidecar.name}"
        assert any(fnmatch(inside, pattern) for pattern in shipped), f"{inside} not package data"
