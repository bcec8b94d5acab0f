"""Draws the benchmark figures (PNG) that docs/benchmarks.md shows, from results files.

    python benchmarks/plots.py benchmarks/results/sqlite.json benchmarks/results/postgres.json
    python benchmarks/plots.py RESULTS.json ... --out DIR          # default: docs/img

A results file is what `throughput.py --json PATH` writes (and `make bench` runs):

    {"store": "sqlite", "source": "2026-11-23, python benchmarks/throughput.py ...",
     "conveyor": {"e2e": {"jobs_per_s": 15580}, "latency": {"p50_ms": 0.9, "p99_ms": 1.8},
                  ...one entry per scenario...},
     "peers": {"Huey 3.5 (SQLite, fsync)": {"jobs_per_s": 1600}, ...}}

(a peer's other scenarios under its "scenarios", conveyor's on other event loops under
"loops": {"uvloop": {...}}). Each file gives throughput-STORE.png (durable end-to-end
jobs/s, conveyor and every peer), enqueue-STORE.png (conveyor's enqueue modes beside its
end-to-end, its store's ceiling and the raw sqlite3 baseline) and, where the file has
them, scenarios-STORE.png (process, sleep10, sync, progress10: jobs/s of conveyor and
each peer that has the feature); all files together give latency.png (enqueue -> start
on an idle runtime, p50 and p99, per store and for each peer measured so). Every figure
names the run its numbers come from (the file's "source"). Needs matplotlib
(`pip install 'conveyor[bench]'`); it draws off-screen (Agg).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).parent))  # loaded by path too (tests/e2e/test_docs.py)
from _report import systems

OURS = "#2b6cb0"
PEER = "#a0aec0"
STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
ENQUEUE_MODES = (
    ("enqueue-1by1", "enqueue, one at a time"),
    ("enqueue-conc", "enqueue, 50 producers"),
    ("enqueue-bulk", "enqueue_many"),
    ("e2e", "end-to-end (enqueue to completed)"),
    ("store-e2e", "the store alone (ceiling)"),
    ("raw-1by1", "raw sqlite3, a FULL commit per job"),
)
BASELINES = ("store-e2e", "raw-1by1")
SCENARIOS = (
    ("process", "N pre-enqueued no-op jobs processed"),
    ("sleep10", "handlers sleeping 10 ms, concurrency 100"),
    ("sync", "sync handlers in threads"),
    ("progress10", "ten progress reports a job"),
)


def load(path: Path) -> dict[str, Any]:
    """A results file, checked for the keys the figures read (ValueError names what is missing)."""
    results: Any = json.loads(path.read_text())
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for key in ("store", "source", "conveyor", "peers"):
        if key not in results:
            raise ValueError(f"{path}: no {key!r}")
    if "jobs_per_s" not in results["conveyor"].get("e2e", {}):
        raise ValueError(f"{path}: no conveyor.e2e.jobs_per_s")
    return results


def _store(results: dict[str, Any]) -> str:
    return STORES.get(results["store"], str(results["store"]))


def _caption(figure: Figure, *sources: str) -> None:
    """The run the figures come from, one line per results file, under the axes."""
    text = "\n".join(f"run: {source}" for source in sources)
    figure.text(0.01, 0.01, text, fontsize=6.5, color="#4a5568", ha="left", va="bottom")


def _color(system: str) -> str:
    return OURS if system.startswith("conveyor (") else PEER


def throughput_chart(results: dict[str, Any]) -> Figure:
    """Durable end-to-end jobs/s: conveyor first (on each event loop measured), then each
    peer, one horizontal bar each."""
    rows = [(f"conveyor ({_store(results)})", results["conveyor"]["e2e"]["jobs_per_s"], OURS)]
    for loop, table in results.get("loops", {}).items():
        if "e2e" in table:
            rows.append((f"conveyor ({_store(results)}), {loop}", table["e2e"]["jobs_per_s"], OURS))
    rows += [
        (label, figures["jobs_per_s"], PEER)
        for label, figures in results["peers"].items()
        if "jobs_per_s" in figures
    ]
    return _bars(
        rows,
        title=f"Durable end-to-end throughput, no-op jobs ({_store(results)} run)",
        unit="jobs/s",
        source=results["source"],
    )


def enqueue_chart(results: dict[str, Any]) -> Figure:
    """conveyor's enqueue modes, its end-to-end rate and its store's ceiling, in jobs/s."""
    ours = results["conveyor"]
    rows = [
        (label, ours[key]["jobs_per_s"], PEER if key in BASELINES else OURS)
        for key, label in ENQUEUE_MODES
        if "jobs_per_s" in ours.get(key, {})
    ]
    return _bars(
        rows,
        title=f"conveyor on {_store(results)}: enqueue and end-to-end",
        unit="jobs/s",
        source=results["source"],
    )


def scenarios_chart(results: dict[str, Any]) -> Figure | None:
    """jobs/s in each of SCENARIOS the file has, conveyor and each peer that ran it, one
    panel per scenario; None if it has none of them."""
    panels = [
        (title, [(system, f["jobs_per_s"]) for system, f in systems(results, key)])
        for key, title in SCENARIOS
        if key in results["conveyor"]
    ]
    if not panels:
        return None
    heights = [0.32 * len(rows) + 0.6 for _, rows in panels]
    figure, axes_list = plt.subplots(
        len(panels),
        1,
        figsize=(8, sum(heights) + 0.8),
        dpi=100,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for axes, (title, rows) in zip(axes_list[:, 0], panels, strict=True):
        values = [value for _, value in rows]
        bars = axes.barh([s for s, _ in rows], values, color=[_color(s) for s, _ in rows])
        axes.bar_label(bars, labels=[f"{v:,.0f} jobs/s" for v in values], fontsize=7, padding=3)
        axes.invert_yaxis()
        axes.set_xlim(0, max(values) * 1.3)
        axes.set_title(f"{title} ({_store(results)} run)", fontsize=9)
        axes.tick_params(labelsize=7)
        axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    _caption(figure, results["source"])
    return figure


def latency_chart(all_results: Sequence[dict[str, Any]]) -> Figure:
    """Enqueue -> handler start on an idle runtime: p50 and p99 bars for conveyor on each
    store (and event loop) measured, then each peer measured so."""
    found = {  # by system; one measured in two files (a peer) is drawn once, the last
        system: figures
        for results in all_results
        for system, figures in systems(results, "latency")
        if "p50_ms" in figures
    }
    groups = list(found.items())
    if not groups:
        raise ValueError("no results file has conveyor.latency (p50_ms, p99_ms)")
    figure, axes = plt.subplots(figsize=(8, 3.4), dpi=100)
    width = 0.38
    for offset, (key, label) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"))):
        xs = [i + (offset - 0.5) * width for i in range(len(groups))]
        values = [figures[key] for _, figures in groups]
        colors = [
            (OURS, "#90cdf4")[offset] if _color(n) == OURS else (PEER, "#cbd5e0")[offset]
            for n, _ in groups
        ]
        bars = axes.bar(xs, values, width, label=label, color=colors)
        axes.bar_label(bars, labels=[f"{v:.1f} ms" for v in values], fontsize=8, padding=2)
    axes.set_xticks(range(len(groups)), [n.replace(" (", "\n(", 1) for n, _ in groups], fontsize=7)
    axes.set_ylabel("ms")
    axes.set_ylim(0, max(figures["p99_ms"] for _, figures in groups) * 1.3)
    axes.set_title("Enqueue -> handler start, idle, one job at a time", fontsize=10)
    axes.legend(fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    sources = dict.fromkeys(r["source"] for r in all_results if "latency" in r["conveyor"])
    figure.subplots_adjust(bottom=0.2 + 0.05 * len(sources))
    _caption(figure, *sources)
    return figure


def _bars(rows: list[tuple[str, float, str]], *, title: str, unit: str, source: str) -> Figure:
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.3), dpi=100)
    labels = [label for label, _, _ in rows]
    values = [value for _, value, _ in rows]
    bars = axes.barh(labels, values, color=[color for _, _, color in rows])
    axes.bar_label(bars, labels=[f"{v:,.0f} {unit}" for v in values], fontsize=8, padding=3)
    axes.invert_yaxis()  # the first row on top
    axes.set_xlim(0, max(values) * 1.25)
    axes.set_title(title, fontsize=10)
    axes.tick_params(labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    _caption(figure, source)
    return figure


def draw(paths: Sequence[Path], out: Path) -> list[Path]:
    """Every figure for these results files, as PNGs in ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    all_results = [load(path) for path in paths]
    figures: list[tuple[str, Figure]] = []
    for results in all_results:
        figures.append((f"throughput-{results['store']}.png", throughput_chart(results)))
        figures.append((f"enqueue-{results['store']}.png", enqueue_chart(results)))
        scenarios = scenarios_chart(results)
        if scenarios is not None:
            figures.append((f"scenarios-{results['store']}.png", scenarios))
    figures.append(("latency.png", latency_chart(all_results)))
    written = []
    for name, figure in figures:
        figure.savefig(out / name, metadata={"Software": None})  # no version: stable files
        plt.close(figure)
        written.append(out / name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "results", nargs="+", type=Path, help="results files (throughput.py --json)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs" / "img")
    args = parser.parse_args()
    for path in draw(args.results, args.out):
        print(path)


if __name__ == "__main__":
    main()
