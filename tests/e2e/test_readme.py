"""Every Python sample in README.md runs exactly as printed: each block is written to a
file in an empty directory and run (a block with a test in it, by pytest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ..conftest import postgres_schema

README = Path(__file__).parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)

pytestmark = pytest.mark.anyio


def test_the_readme_has_its_samples() -> None:
    assert len(BLOCKS) >= 6


def run_sample(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    sample = cwd / ("test_sample.py" if "def test_" in code else "sample.py")
    sample.write_text(code)
    command = ["-m", "pytest", "-q", "-p", "no:cacheprovider", sample.name]
    return subprocess.run(
        [sys.executable, *(command if "def test_" in code else [sample.name])],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_a_readme_sample_runs_as_printed(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if "DATABASE_URL" in code:  # the PostgreSQL sample: a schema of its own
        async with postgres_schema() as url:
            done = await anyio.to_thread.run_sync(run_sample, code, tmp_path, {"DATABASE_URL": url})
    else:
        done = await anyio.to_thread.run_sync(run_sample, code, tmp_path, {})
    assert done.returncode == 0, f"sample {index}:\n{code}\n{done.stdout}\n{done.stderr}"
    if "def test_" in code:
        assert " passed" in done.stdout
