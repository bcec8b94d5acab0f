"""Draws the benchmark figures (PNG) that docs/benchmarks.md shows, from results files.

    python benchmarks/plots.py benchmarks/results/sqlite.json benchmarks/results/postgres.json
    python benchmarks/plots.py RESULTS.json ... --out DIR          # default: docs/img

A results file is what `throughput.py --json PATH` writes (and `make bench` runs):

    {"store": "sqlite", "source": "2026-11-23, python benchmarks/throughput.py ...",
     "conveyor": {"e2e": {"jobs_per_s": 15580}, "latency": {"p50_ms": 0.9, "p99_ms": 1.8},
                  ...one entry per scenario...},
     "peers": {"Huey 3.5 (SQLite, fsync)": {"jobs_per_s": 1600}, ...}}

Each file gives throughput-STORE.png (durable end-to-end jobs/s, conveyor and every peer)
and enqueue-STORE.png (conveyor's enqueue modes beside its end-to-end and its store's
ceiling); all files together give latency.png (enqueue -> start on an idle runtime, p50 and
p99 per store). Every figure names the run its numbers come from (the file's "source").
Needs matplotlib (`pip install 'conveyor[bench]'`); it draws off-screen (Agg).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

OURS = "#2b6cb0"
PEER = "#a0aec0"
STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
ENQUEUE_MODES = (
    ("enqueue-1by1", "enqueue, one at a time"),
    ("enqueue-conc", "enqueue, 50 producers"),
    ("enqueue-bulk", "enqueue_many"),
    ("e2e", "end-to-end (enqueue to completed)"),
    ("store-e2e", "the store alone (ceiling)"),
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


def throughput_chart(results: dict[str, Any]) -> Figure:
    """Durable end-to-end jobs/s: conveyor first, then each peer, one horizontal bar each."""
    rows = [(f"conveyor ({_store(results)})", results["conveyor"]["e2e"]["jobs_per_s"], OURS)]
    rows += [(label, figures["jobs_per_s"], PEER) for label, figures in results["peers"].items()]
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
        (label, ours[key]["jobs_per_s"], OURS if key != "store-e2e" else PEER)
        for key, label in ENQUEUE_MODES
        if "jobs_per_s" in ours.get(key, {})
    ]
    return _bars(
        rows,
        title=f"conveyor on {_store(results)}: enqueue and end-to-end",
        unit="jobs/s",
        source=results["source"],
    )


def latency_chart(all_results: Sequence[dict[str, Any]]) -> Figure:
    """Enqueue -> handler start on an idle runtime: p50 and p99 bars per store."""
    measured = [r for r in all_results if "p50_ms" in r["conveyor"].get("latency", {})]
    if not measured:
        raise ValueError("no results file has conveyor.latency (p50_ms, p99_ms)")
    figure, axes = plt.subplots(figsize=(8, 3.4), dpi=100)
    width = 0.38
    for offset, (key, label) in enumerate((("p50_ms", "p50"), ("p99_ms", "p99"))):
        xs = [i + (offset - 0.5) * width for i in range(len(measured))]
        values = [r["conveyor"]["latency"][key] for r in measured]
        bars = axes.bar(xs, values, width, label=label, color=(OURS, "#90cdf4")[offset])
        axes.bar_label(bars, labels=[f"{v:.1f} ms" for v in values], fontsize=8, padding=2)
    axes.set_xticks(range(len(measured)), [_store(r) for r in measured])
    axes.set_ylabel("ms")
    axes.set_ylim(0, max(r["conveyor"]["latency"]["p99_ms"] for r in measured) * 1.3)
    axes.set_title("Enqueue -> handler start, idle runtime", fontsize=10)
    axes.legend(fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.subplots_adjust(bottom=0.12 + 0.05 * len(measured))
    _caption(figure, *dict.fromkeys(r["source"] for r in measured))
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
