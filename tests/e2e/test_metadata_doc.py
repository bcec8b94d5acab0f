"""docs/metadata.md's sample runs as printed (as README's do, in test_readme)."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from .test_readme import run_sample

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

DOC = Path(__file__).parents[2] / "docs" / "metadata.md"


async def test_the_metadata_page_sample_runs_as_printed(tmp_path: Path) -> None:
    [code] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    done = await anyio.to_thread.run_sync(run_sample, code, tmp_path, {})
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
