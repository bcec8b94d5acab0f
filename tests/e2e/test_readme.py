"""Every Python sample in README.md and in the docs (docs/*.md) runs exactly as printed:
each ```python block is written to a file in an empty directory and run (a block with a
test in it, by pytest; one naming DATABASE_URL, against a PostgreSQL schema of its own).
A fragment that is not a whole program (one line of configuration, say) is fenced ```py
instead: highlighted alike on the site, not run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from ..conftest import postgres_schema

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SAMPLE = re.compile(r"```python\n(.*?)```", flags=re.DOTALL)
BLOCKS = [
    (f"{page.relative_to(ROOT)}:{index}", code)
    for page in PAGES
    for index, code in enumerate(SAMPLE.findall(page.read_text()))
]

pytestmark = pytest.mark.anyio


def test_the_readme_and_the_docs_have_their_samples() -> None:
    names = [name for name, _ in BLOCKS]
    assert any(name.startswith("README.md:") for name in names)
    for page in ("getting-started", "howto-fastapi", "howto-django", "howto-testing"):
        assert any(name.startswith(f"docs/{page}.md:") for name in names), page
    assert len(BLOCKS) >= 15


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


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
async def test_a_sample_runs_as_printed(name: str, code: str, tmp_path: Path) -> None:
    if "DATABASE_URL" in code:  # a PostgreSQL sample: a schema of its own
        async with postgres_schema() as url:
            done = await anyio.to_thread.run_sync(run_sample, code, tmp_path, {"DATABASE_URL": url})
    else:
        done = await anyio.to_thread.run_sync(run_sample, code, tmp_path, {})
    assert done.returncode == 0, f"{name}:\n{code}\n{done.stdout}\n{done.stderr}"
    if "def test_" in code:
        assert " passed" in done.stdout
