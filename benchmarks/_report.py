"""throughput.py's table (Markdown, printed and written with --markdown) and issue 16's
bars as this run measured them, both from the results it writes with --json (see
plots.py for that file's shape)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

BULLMQ = "BullMQ"  # a peer's label starting with this is BullMQ's
BASELINES = {  # the rows that are not conveyor itself
    "store-e2e": "conveyor's store alone, 1,000 jobs a transaction",
    "raw-1by1": "raw sqlite3 (no conveyor), WAL, synchronous=FULL",
}


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def systems(results: dict[str, Any], scenario: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(system, figures) of one scenario: conveyor (on asyncio, then on each other event
    loop measured), then each peer that ran it."""
    store = {"sqlite": "SQLite, fsync", "postgres": "PostgreSQL"}.get(results["store"], "")
    ours = BASELINES.get(scenario, f"conveyor ({store})")
    if scenario in results["conveyor"]:
        yield ours, results["conveyor"][scenario]
    for loop, table in results.get("loops", {}).items():
        if scenario in table:
            yield f"{ours}, on {loop}", table[scenario]
    for label, figures in results["peers"].items():
        if scenario == "e2e" and "jobs_per_s" in figures:
            yield label, figures
        elif scenario in figures.get("scenarios", {}):
            yield label, figures["scenarios"][scenario]


def table(results: dict[str, Any], scenarios: list[str], descriptions: dict[str, str]) -> str:
    """The run as a Markdown table, a row per scenario and system, with its notes."""
    lines = [
        f"# {results['title']}",
        "",
        f"Run: {results['source']}",
        "",
        "| scenario | system | jobs/s | p50 ms | p99 ms | peak RSS MB | runs, jobs/s"
        " | first row ÷ it |",
        "|---|---|--:|--:|--:|--:|---|--:|",
    ]
    for scenario in scenarios:
        reference = results["conveyor"].get(scenario, {})
        ours = reference.get("jobs_per_s")
        for system, figures in systems(results, scenario):
            rate = figures.get("jobs_per_s")
            ratio = f"{ours / rate:.2f}x" if ours and rate and figures is not reference else ""
            note = f" — {figures['note']}" if figures.get("note") else ""
            lines.append(
                f"| {scenario} | {system}{note} | {_num(rate)} | {_num(figures.get('p50_ms'), 2)}"
                f" | {_num(figures.get('p99_ms'), 2)} | {_num(figures.get('peak_rss_mb'))}"
                f" | {', '.join(f'{r:,.0f}' for r in figures.get('runs', []))} | {ratio} |"
            )
    lines += ["", "Scenarios:", ""]
    lines += [f"- `{name}`: {descriptions[name]}" for name in scenarios if name in descriptions]
    lines += ["", "What differs between the systems:", ""]
    lines += [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def _peer_figures(results: dict[str, Any], prefix: str, scenario: str) -> dict[str, Any]:
    for label, figures in results["peers"].items():
        if label.startswith(prefix):
            found: dict[str, Any] = figures.get("scenarios", {}).get(scenario, {})
            return found
    return {}


def bars(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each bar of issue 16 that this run measured, on each event loop: the figure, what
    it is held against (``reference``), ``ratio`` = figure ÷ reference, what the ratio
    needs to be (``needs``: ">= 0.8", "> 1", "<= 1"), and whether it is ``met``. The
    figures are the loop's own; the references (store-e2e, raw-1by1) too where measured,
    else asyncio's."""
    found: list[dict[str, Any]] = []
    base = results["conveyor"]
    bullmq = _peer_figures(results, BULLMQ, "process").get("jobs_per_s")
    for loop, ours in {"asyncio": base, **results.get("loops", {})}.items():

        def mine(scenario: str, ours: dict[str, Any] = ours) -> Any:
            return ours.get(scenario, {}).get("jobs_per_s")

        def ref(scenario: str, ours: dict[str, Any] = ours) -> Any:
            return ours.get(scenario, base.get(scenario, {})).get("jobs_per_s")

        latency = ours.get("latency", {})
        specs = [
            ("e2e ≥ 25,000 jobs/s", mine("e2e"), 25_000, ">=", 1.0, "jobs/s"),
            ("e2e ≥ 80 % of store-e2e", mine("e2e"), ref("store-e2e"), ">=", 0.8, "jobs/s"),
            (
                "process > BullMQ's process (concurrency 100)",
                mine("process"),
                bullmq,
                ">",
                1.0,
                "jobs/s",
            ),
            (
                "enqueue-1by1 ≥ 70 % of raw-1by1 (raw sqlite3)",
                mine("enqueue-1by1"),
                ref("raw-1by1"),
                ">=",
                0.7,
                "jobs/s",
            ),
            ("idle latency p50 ≤ 0.5 ms", latency.get("p50_ms"), 0.5, "<=", 1.0, "ms"),
            ("idle latency p99 ≤ 1.5 ms", latency.get("p99_ms"), 1.5, "<=", 1.0, "ms"),
        ]
        for name, measured, reference, op, needed, unit in specs:
            if measured is None or reference is None:
                continue
            ratio = measured / reference
            met = {">=": ratio >= needed, ">": ratio > needed, "<=": ratio <= needed}[op]
            found.append(
                {
                    "bar": name,
                    "loop": loop,
                    "measured": measured,
                    "reference": reference,
                    "unit": unit,
                    "ratio": ratio,
                    "needs": f"{op} {needed:g}",
                    "met": met,
                }
            )
    return found


def bars_text(found: list[dict[str, Any]]) -> str:
    lines = ["## issue 16 bars", "", "As measured in this run; ratio = measured ÷ reference.", ""]
    for item in found:
        unit = item["unit"]
        digits = 2 if unit == "ms" else 0
        loop = "" if item["loop"] == "asyncio" else f"[{item['loop']}] "
        lines.append(
            f"- {loop}{item['bar']}: {item['measured']:,.{digits}f} {unit} vs"
            f" {item['reference']:,.{digits}f} {unit}, ratio {item['ratio']:.2f}"
            f" (needs {item['needs']}): **{'met' if item['met'] else 'not met'}**"
        )
    if not found:
        lines.append(
            "- none measured (they need e2e, store-e2e, process, enqueue-1by1, raw-1by1,"
            " latency, and the bullmq peer)"
        )
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"table written to {path}")
