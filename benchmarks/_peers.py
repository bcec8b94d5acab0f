"""The peers throughput.py runs beside conveyor: which scenarios each has the feature
for, and one run of one, in its own virtualenv (Python) or npm folder (Node), made by
peers/setup.sh on first use under the git-ignored benchmarks/.peers/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
NODE_PEERS = ("bullmq",)
# The scenarios each peer has the feature for (see peers/_common.py and each script).
FEATURES: dict[str, tuple[str, ...]] = {
    "huey": ("e2e", "process", "sleep10", "sync"),
    "arq": ("e2e", "process", "sleep10"),
    "saq": ("e2e", "process", "sleep10", "sync", "progress10"),
    "taskiq": ("e2e", "process", "sleep10", "sync", "progress10"),
    "procrastinate": ("e2e", "process", "sleep10", "sync"),
    "pgqueuer": ("e2e", "process", "sleep10"),
    "bullmq": ("e2e", "process", "latency", "sleep10", "progress10"),
}
# Why a peer has no row in a scenario it lacks, for the table's notes.
LACKS = {
    "sync": "no sync handlers: arq and pgqueuer run coroutines only; BullMQ's JavaScript"
    " has none (its sandboxed processors, in worker threads or processes, are not measured)",
    "progress10": "no progress reports in huey, arq, procrastinate nor pgqueuer",
    "latency": "idle latency (one job at a time) is measured for BullMQ only among the peers",
}


def parse(spec: str) -> dict[str, tuple[str, ...]]:
    """``huey,arq,procrastinate:e2e+process``: each peer named, with the scenarios it
    runs (all it has the feature for, unless listed after a colon)."""
    peers: dict[str, tuple[str, ...]] = {}
    for item in filter(None, spec.split(",")):
        name, _, only = item.partition(":")
        if name not in FEATURES:
            raise SystemExit(f"unknown peer {name!r} (known: {', '.join(FEATURES)})")
        wanted = tuple(only.split("+")) if only else FEATURES[name]
        lacking = set(wanted) - set(FEATURES[name])
        if lacking:
            raise SystemExit(f"{name} has no {', '.join(sorted(lacking))} scenario")
        peers[name] = wanted
    return peers


def _command(peer: str) -> tuple[list[str], dict[str, str]]:
    folder = HERE / ".peers" / peer
    if peer in NODE_PEERS:
        ready = (folder / "node_modules" / peer).exists()
        script = HERE / "peers" / f"{peer}_bench.cjs"
        command = ["node", str(script)]
        env = {**os.environ, "NODE_PATH": str(folder / "node_modules")}
    else:
        ready = (folder / "bin" / "python").exists()
        script = HERE / "peers" / f"{peer}_bench.py"
        command, env = [str(folder / "bin" / "python"), str(script)], dict(os.environ)
    if not ready:
        subprocess.run(["bash", str(HERE / "peers" / "setup.sh"), peer], check=True, timeout=600)
    return command, env


def run(peer: str, scenario: str, jobs: int, concurrency: int) -> dict[str, Any] | None:
    """One run's figures (with its "label"), or None if it failed (said on stderr)."""
    if peer in NODE_PEERS and shutil.which("node") is None:
        print(f"  {peer}: skipped: it needs Node 20 and npm on the PATH", file=sys.stderr)
        return None
    command, env = _command(peer)
    arguments = ["--scenario", scenario, "--jobs", str(jobs), "--concurrency", str(concurrency)]
    result = subprocess.run(
        [*command, *arguments], capture_output=True, text=True, timeout=900, env=env
    )
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:]
        print(f"  {peer} {scenario}: failed: {last}", file=sys.stderr)
        return None
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def redis_persistence() -> str:
    """What the local Redis keeps on disk, from its own CONFIG (for the table's notes)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as conn:
            answers = []
            for key in ("save", "appendonly"):
                conn.sendall(
                    f"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode()
                )
                answers.append(conn.recv(4096).decode(errors="replace").split("\r\n"))
    except OSError as exc:
        return f"Redis not reached ({exc})"
    save = answers[0][4] if len(answers[0]) > 4 else "?"
    appendonly = answers[1][4] if len(answers[1]) > 4 else "?"
    if save == "" and appendonly == "no":
        return "Redis here keeps nothing on disk (save '', appendonly no): not durable"
    return f"Redis here: save {save!r}, appendonly {appendonly}"
