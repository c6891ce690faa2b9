"""The README's ```python blocks run as tests, each in a fresh empty working directory.

A block that needs something a test run can't have is marked with ``<!-- no-test -->`` on the
line right before its opening fence; keep that rare.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from . import _procs

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NO_TEST = "<!-- no-test -->"


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, runnable) of each ```python block."""
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        blocks.append((line, match.group(1), before != NO_TEST))
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_code_to_run() -> None:
    runnable = [b for b in BLOCKS if b[2]]
    assert runnable, "no ```python block in README.md"
    assert len(BLOCKS) - len(runnable) <= max(1, len(BLOCKS) // 5), "too many blocks marked no-test"


def test_the_block_finder() -> None:
    text = "x\n```python\na = 1\n```\n<!-- no-test -->\n```python\nb = 2\n```\n```sh\nls\n```\n"
    assert python_blocks(text) == [(2, "a = 1\n", True), (6, "b = 2\n", False)]


@pytest.mark.parametrize(("line", "code", "runnable"), BLOCKS, ids=[f"README.md:{b[0]}" for b in BLOCKS])
def test_readme_block_runs(tmp_path: Path, line: int, code: str, runnable: bool) -> None:
    if not runnable:
        pytest.skip(f"README.md:{line} is marked {NO_TEST}")
    script = tmp_path / f"readme_{line}.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_procs.worker_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stdout}\n{done.stderr}"
