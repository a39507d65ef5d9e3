"""Static checks run as tests, so the README's single test command covers them.

mypy cannot follow setuptools' package-dir mapping (``streams/`` ships as
``docket.streams``), so it checks a mirror of the tree laid out as it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 800


def _mirror(tmp: Path) -> Path:
    package = tmp / "docket"
    shutil.copytree(ROOT / "docket", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "streams", package / "streams", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "schemas", package / "schemas", ignore=shutil.ignore_patterns("__pycache__"))
    return package


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    _mirror(tmp_path)
    shutil.copy(ROOT / "tests" / "typing" / "public_types.py", tmp_path / "public_types.py")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental",
         "docket", "public_types.py"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    folders = [f for f in ("docket", "streams", "bench", "examples", "tests") if (ROOT / f).is_dir()]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *folders],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder", ["docket", "streams", "bench", "tests", "examples"])
def test_no_module_over_800_lines(folder: str) -> None:
    if not (ROOT / folder).is_dir():
        pytest.skip(f"no {folder}/ yet")
    too_long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
                if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not too_long, f"split these modules by concept: {too_long}"


def test_import_layers_are_kept() -> None:
    """import-linter contracts in pyproject.toml: the pure core never imports the shell."""
    result = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                             "lint_imports_command()"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout
