"""Network namespaces of the suite's own, for faults between workers and PostgreSQL.

::

    root namespace                 wire namespace               worker namespace
    PostgreSQL 127.0.0.1:5432      (forwards; nftables drops)   worker processes
    forwarder 10.231.1.1:PORT ---- veth ---- 10.231.1.2 / 10.231.2.1 ---- veth ---- 10.231.2.2

Workers reach the server through the forwarder (forwarder.py, which can add delay) and
the wire namespace, whose nftables rules drop packets (a share of them, or all: a
blackhole). The drops happen in the middle, so neither end's TCP hears of them, as on a
real network. This kernel has no netem, hence nftables for loss and the forwarder for
delay. Only addresses inside these namespaces are used. Needs root, iproute2, nftables.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

HOST, WIRE_IN, WIRE_OUT, WORKER = "10.231.1.1", "10.231.1.2", "10.231.2.1", "10.231.2.2"


def missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"no {tool} ({package}: apt-get install {package})"
    return None


def _run(*args: str, ns: str | None = None) -> None:
    command = [*(["ip", "netns", "exec", ns] if ns else []), *args]
    subprocess.run(command, check=True, capture_output=True, timeout=20)


class Network:
    """The three namespaces' wiring, made on entry and removed on exit."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100_000:05d}"
        self.wire, self.worker = f"cvwire{tag}", f"cvwork{tag}"
        self.host_if, self.wire_in, self.wire_out, self.worker_if = (
            f"cvh{tag}",
            f"cvi{tag}",
            f"cvo{tag}",
            f"cvk{tag}",
        )

    def __enter__(self) -> Network:
        self._clear_leftovers()
        for ns in (self.wire, self.worker):
            _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.wire_in)
        _run("ip", "link", "add", self.wire_out, "type", "veth", "peer", "name", self.worker_if)
        _run("ip", "link", "set", self.wire_in, "netns", self.wire)
        _run("ip", "link", "set", self.wire_out, "netns", self.wire)
        _run("ip", "link", "set", self.worker_if, "netns", self.worker)
        _run("ip", "addr", "add", f"{HOST}/24", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        _run("ip", "route", "add", "10.231.2.0/24", "via", WIRE_IN)
        for cmd in (
            ["ip", "addr", "add", f"{WIRE_IN}/24", "dev", self.wire_in],
            ["ip", "addr", "add", f"{WIRE_OUT}/24", "dev", self.wire_out],
            ["ip", "link", "set", self.wire_in, "up"],
            ["ip", "link", "set", self.wire_out, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        ):
            _run(*cmd, ns=self.wire)
        for cmd in (
            ["ip", "addr", "add", f"{WORKER}/24", "dev", self.worker_if],
            ["ip", "link", "set", self.worker_if, "up"],
            ["ip", "link", "set", "lo", "up"],
            ["ip", "route", "add", "default", "via", WIRE_OUT],
        ):
            _run(*cmd, ns=self.worker)
        self.heal()
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in (self.wire, self.worker):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=20)

    def _clear_leftovers(self) -> None:
        """Namespaces and links a killed earlier run of the suite left behind."""
        listed = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
        for line in listed.stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name.startswith("cvh"):
                subprocess.run(["ip", "link", "del", name], capture_output=True)
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in namespaces.stdout.splitlines():
            name = line.split()[0]
            if name.startswith(("cvwire", "cvwork")):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def _rules(self, rule: str) -> None:
        script = (
            "flush ruleset\n"
            "table inet cv {\n"
            "  chain forward {\n"
            f"    type filter hook forward priority 0; policy accept; {rule}\n"
            "  }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.wire, "nft", "-f", "-"],
            input=script.encode(),
            check=True,
            capture_output=True,
            timeout=20,
        )

    def heal(self) -> None:
        self._rules("")

    def lose(self, percent: int) -> None:
        """Drop ``percent`` % of the packets crossing the wire, either way."""
        self._rules(f"numgen random mod 100 < {percent} drop")

    def blackhole(self) -> None:
        """Drop every packet crossing the wire: a partition neither end hears of."""
        self._rules("drop")

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the worker namespace."""
        return ["ip", "netns", "exec", self.worker, *argv]
