"""The README's Python snippets run as written (each in its own process and directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SNIPPETS = BLOCK.findall((ROOT / "README.md").read_text())
TIMEOUT_S = 60


def test_readme_has_python_snippets() -> None:
    assert SNIPPETS, "README.md has no ```python blocks"


@pytest.mark.parametrize(
    "index", range(len(SNIPPETS)), ids=[f"block{i + 1}" for i in range(len(SNIPPETS))]
)
def test_readme_snippet_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"readme_block{index + 1}.py"
    script.write_text(SNIPPETS[index])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKET_")}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"README python block {index + 1} exited with {result.returncode}\n"
        f"--- code ---\n{SNIPPETS[index]}\n--- stdout ---\n{result.stdout}\n"
        f"--- stderr ---\n{result.stderr}"
    )
