"""The documentation site: it builds with mkdocs --strict (a broken link or anchor fails),
its generated CLI reference is what the parser says, its table of transitions is the one
the code enforces, and the benchmark plots are drawn from the figures they are given.
(The samples on its pages run in test_readme.py.)"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor._states import TRANSITIONS, JobStatus, Owner
from conveyor.cli import build_parser

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")
PNG = b"\x89PNG\r\n\x1a\n"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strict_and_offline(tmp_path: Path) -> None:
    done = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stderr
    for page in ("index.html", "cli/index.html", "no-broker/index.html", "img/dashboard.png"):
        assert (tmp_path / "site" / page).exists(), page
    assert not list((tmp_path / "site").rglob("*.py")), "the docs' scripts are not published"
    html = (tmp_path / "site" / "index.html").read_text()
    assert "fonts.googleapis.com" not in html  # theme.font: false, so nothing is fetched


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "concepts.md"
    page.write_text(page.read_text() + "\nSee [the missing page](nowhere.md).\n")
    config = tmp_path / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    config.write_text(text)
    done = _build(config, tmp_path / "site")
    assert done.returncode != 0
    assert "nowhere.md" in done.stderr


def test_the_cli_reference_is_what_the_parser_says() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    done = subprocess.run(
        [sys.executable, str(DOCS / "gen_cli.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, "CONVEYOR_DB": "from-the-environment.db"},
    )
    assert done.returncode == 0, done.stderr
    page = (DOCS / "cli.md").read_text()
    assert page == _module(DOCS / "gen_cli.py").render()
    assert "from-the-environment.db" not in page


def _commands(
    parser: argparse.ArgumentParser, path: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{path} {name}")
    return found


def test_the_cli_reference_has_every_command_and_option() -> None:
    page = (DOCS / "cli.md").read_text()
    sections = dict(re.findall(r"^## `([^`]+)`\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S))
    commands = _commands(build_parser(), "conveyor")
    assert len(commands) > 15
    for path, parser in commands:
        assert path in sections, path
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in sections[path], f"{path} {flag}"


def test_the_transition_table_is_the_one_the_code_enforces() -> None:
    page = (DOCS / "concepts.md").read_text()
    rows = re.findall(r"^\| (\(new\)|`\w+`) \| `(\w+)` \| (\w+) \| .* \|$", page, flags=re.M)
    documented = [
        (None if source == "(new)" else JobStatus(source.strip("`")), JobStatus(target), Owner(by))
        for source, target, by in rows
    ]
    assert len(documented) == len(set(documented))
    assert set(documented) == TRANSITIONS


@pytest.fixture(scope="module")
def plots() -> ModuleType:
    return _module(ROOT / "benchmarks" / "plots.py")


RESULTS: dict[str, Any] = {
    "store": "sqlite",
    "source": "a fixed input",
    "conveyor": {
        "e2e": {"jobs_per_s": 1000.0},
        "store-e2e": {"jobs_per_s": 2000.0},
        "enqueue-bulk": {"jobs_per_s": 5000.0},
        "latency": {"p50_ms": 1.5, "p99_ms": 4.0},
    },
    "peers": {"peer A": {"jobs_per_s": 250.0}, "peer B": {"jobs_per_s": 100.0}},
}


def test_the_throughput_plot_draws_each_system_at_its_rate(plots: ModuleType) -> None:
    figure = plots.throughput_chart(RESULTS)
    axes = figure.axes[0]
    labels = [label.get_text() for label in axes.get_yticklabels()]
    widths = [bar.get_width() for bar in axes.patches]
    assert dict(zip(labels, widths, strict=True)) == {
        "conveyor (SQLite)": 1000.0,
        "peer A": 250.0,
        "peer B": 100.0,
    }
    assert any("a fixed input" in text.get_text() for text in figure.texts)  # names its run


def test_the_enqueue_and_latency_plots_draw_what_was_measured(plots: ModuleType) -> None:
    enqueue = plots.enqueue_chart(RESULTS).axes[0]
    rates = {
        t.get_text(): b.get_width()
        for t, b in zip(enqueue.get_yticklabels(), enqueue.patches, strict=True)
    }
    assert rates == {
        "enqueue_many": 5000.0,
        "end-to-end (enqueue to completed)": 1000.0,
        "the store alone (ceiling)": 2000.0,
    }
    latency = plots.latency_chart([RESULTS]).axes[0]
    assert sorted(bar.get_height() for bar in latency.patches) == [1.5, 4.0]


FULL: dict[str, Any] = {
    **RESULTS,
    "conveyor": {
        **RESULTS["conveyor"],
        "process": {"jobs_per_s": 3000.0},
        "enqueue-1by1": {"jobs_per_s": 600.0},
        "raw-1by1": {"jobs_per_s": 800.0},
    },
    "loops": {"uvloop": {"e2e": {"jobs_per_s": 1200.0}, "process": {"jobs_per_s": 2400.0}}},
    "peers": {
        "peer A": {"jobs_per_s": 250.0, "scenarios": {"process": {"jobs_per_s": 2000.0}}},
        "BullMQ 5 (Redis)": {
            "jobs_per_s": 900.0,
            "scenarios": {
                "process": {"jobs_per_s": 2500.0},
                "latency": {"p50_ms": 1.0, "p99_ms": 3.0},
            },
        },
    },
}


def test_the_scenario_plots_and_issue_16s_bars_are_what_was_measured(plots: ModuleType) -> None:
    (process,) = plots.scenarios_chart(FULL).axes  # the only one of its scenarios measured
    rates = {
        t.get_text(): b.get_width()
        for t, b in zip(process.get_yticklabels(), process.patches, strict=True)
    }
    assert rates == {
        "conveyor (SQLite, fsync)": 3000.0,
        "conveyor (SQLite, fsync), on uvloop": 2400.0,
        "peer A": 2000.0,
        "BullMQ 5 (Redis)": 2500.0,
    }
    assert plots.scenarios_chart(RESULTS) is None  # nothing to draw: no file for it
    enqueue = plots.enqueue_chart(FULL).axes[0]
    assert [t.get_text() for t in enqueue.get_yticklabels()][-1] == (
        "raw sqlite3, a FULL commit per job"
    )
    latency = plots.latency_chart([FULL]).axes[0]
    assert sorted(bar.get_height() for bar in latency.patches) == [1.0, 1.5, 3.0, 4.0]

    report = _module(ROOT / "benchmarks" / "_report.py")
    bars = {(b["loop"], b["bar"]): (round(b["ratio"], 3), b["met"]) for b in report.bars(FULL)}
    assert bars == {
        ("asyncio", "e2e ≥ 25,000 jobs/s"): (0.04, False),
        ("asyncio", "e2e ≥ 80 % of store-e2e"): (0.5, False),
        ("asyncio", "process > BullMQ's process (concurrency 100)"): (1.2, True),
        ("asyncio", "enqueue-1by1 ≥ 70 % of raw-1by1 (raw sqlite3)"): (0.75, True),
        ("asyncio", "idle latency p50 ≤ 0.5 ms"): (3.0, False),
        ("asyncio", "idle latency p99 ≤ 1.5 ms"): (2.667, False),
        # uvloop's own figures (it measured no enqueue nor latency), asyncio's store-e2e
        ("uvloop", "e2e ≥ 25,000 jobs/s"): (0.048, False),
        ("uvloop", "e2e ≥ 80 % of store-e2e"): (0.6, False),
        ("uvloop", "process > BullMQ's process (concurrency 100)"): (0.96, False),
    }


def test_draw_writes_the_pngs_and_refuses_incomplete_results(
    plots: ModuleType, tmp_path: Path
) -> None:
    source = tmp_path / "sqlite.json"
    source.write_text(json.dumps(RESULTS))
    written = plots.draw([source], tmp_path / "img")
    assert sorted(path.name for path in written) == [
        "enqueue-sqlite.png",
        "latency.png",
        "throughput-sqlite.png",
    ]
    for path in written:
        assert path.read_bytes().startswith(PNG)
    broken = tmp_path / "broken.json"
    broken.write_text('{"store": "sqlite", "source": "x", "conveyor": {}, "peers": {}}')
    with pytest.raises(ValueError, match=r"conveyor\.e2e\.jobs_per_s"):
        plots.draw([broken], tmp_path / "img")


def test_the_committed_figures_and_pictures_are_there(plots: ModuleType) -> None:
    for store in ("sqlite", "postgres"):
        results = plots.load(ROOT / "benchmarks" / "results" / f"{store}.json")
        assert results["store"] == store
        for name in (f"throughput-{store}.png", f"enqueue-{store}.png"):
            assert (DOCS / "img" / name).read_bytes().startswith(PNG)
    screenshot = DOCS / "img" / "dashboard.png"
    assert screenshot.read_bytes().startswith(PNG)
    assert screenshot.stat().st_size < 300_000


def test_the_readme_links_to_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert len(local) > 10
    for target in local:
        assert (ROOT / target).exists(), target
