"""The layout's rules, checked on the source: what may import what, what the Bento
ships and what it installs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("pipelines", "training", "service", "bench", "tests")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in a file, nested ones included."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _files("pipelines"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pipelines_never_imports_training_or_bench(path: Path) -> None:
    bad = [m for m, _ in _imports(path) if m.split(".")[0] in ("training", "bench", "service")]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_service_imports_only_pipelines_of_the_project() -> None:
    mods = {m.split(".")[0] for m, _ in _imports(ROOT / "service.py")}
    assert not mods & {"training", "bench", "tests"}, mods
    assert "pipelines" in mods


@pytest.mark.parametrize(
    "path",
    [p for d in ("pipelines", "training", "bench") for p in _files(d)] + [ROOT / "service.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_private_name_is_imported_across_modules(path: Path) -> None:
    private = [
        f"{m}.{n}"
        for m, names in _imports(path)
        if m.split(".")[0] in PROJECT
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not private, f"{path.relative_to(ROOT)} imports private names {private}"


def test_the_bento_ships_service_and_pipelines_only() -> None:
    cfg = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert cfg["include"] == [
        "/service.py",
        "/pipelines/**/*.py",
        "/pipelines/serving/ui_assets/*",
        "/pipelines/models/metrics_guide.md",
    ]
    for folder in ("/tests/", "/training/"):
        assert folder in cfg["exclude"]


def test_the_bentos_requirements_have_no_training_libraries() -> None:
    pins = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    assert {"bentoml", "lightgbm", "pandas", "pydantic"} <= pins
    assert not pins & {"scikit-learn", "matplotlib", "typer"}, pins & {"scikit-learn"}


@pytest.mark.parametrize("module", ["bentoml", "fastapi", "numpy", "lightgbm", "pandas"])
def test_the_installed_dependencies_are_byte_compiled(module: str) -> None:
    # Python writes no .pyc where PYTHONDONTWRITEBYTECODE is set (CI, containers): without
    # compiled files from the install, each of the Bento's processes compiled every module
    # at every start (cold start 10 s instead of 4; `uv sync --compile-bytecode`)
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    assert Path(importlib.util.cache_from_source(spec.origin)).is_file(), f"{module} not compiled"
