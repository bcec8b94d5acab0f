"""The public API, the transition table and the layer boundaries, held by tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import conveyor
from conveyor import TERMINAL, JobStatus
from conveyor._states import TRANSITIONS, Owner, is_allowed, sources

SRC = Path(conveyor.__file__).parent


def test_all_lists_exactly_the_public_names() -> None:
    # pytest rewrites the asserts of a pytest11 plugin's package (conveyor's, for
    # conveyor.pytest_plugin), which leaves its "@py_builtins" and "@pytest_ar" there.
    public = {name for name in vars(conveyor) if not name.startswith(("_", "@"))}
    # The submodules, not re-exports (present once some test has imported them).
    modules = {"store", "engine", "server", "client", "sync", "backoff", "testing", "cli"}
    modules |= {"metrics", "pytest_plugin", "asgi"}
    assert set(conveyor.__all__) == public - modules
    assert isinstance(conveyor.__all__, tuple)
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None


def test_spec_names_are_exported() -> None:
    for name in (
        "Runtime Queue Job JobStatus Progress report_progress check_cancelled current_job"
        " ConveyorError ValidationError JobNotFound QueueNotFound JobCancelled"
    ).split():
        assert name in conveyor.__all__


def test_status_values_are_the_wire_strings() -> None:
    assert [s.value for s in JobStatus] == [
        "scheduled",
        "queued",
        "running",
        "cancelling",
        "completed",
        "failed",
        "cancelled",
    ]
    assert {s.value for s in TERMINAL} == {"completed", "failed", "cancelled"}


def test_terminal_states_change_only_by_a_user_rerun() -> None:
    for source, target, owner in TRANSITIONS:
        if source in TERMINAL:
            assert (target, owner) == (JobStatus.QUEUED, Owner.USER)


def test_every_state_is_reachable_and_every_non_terminal_state_can_end() -> None:
    reachable = {target for _, target, _ in TRANSITIONS}
    assert reachable == set(JobStatus)
    for status in set(JobStatus) - TERMINAL:
        assert any(src is status for src, _, _ in TRANSITIONS), status


def test_lookup_helpers() -> None:
    assert sources(JobStatus.CANCELLED, Owner.USER) == {JobStatus.QUEUED, JobStatus.SCHEDULED}
    assert is_allowed(JobStatus.QUEUED, JobStatus.RUNNING, Owner.SCHEDULER)
    assert not is_allowed(JobStatus.COMPLETED, JobStatus.RUNNING, Owner.SCHEDULER)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            if node.module:
                found.add(prefix + node.module)
            else:  # from .. import _codec
                found |= {prefix + alias.name for alias in node.names}
    return found


# The blocking client (sync.Producer, beside it, writes to the store and speaks no wire).
SYNC_CLIENT = ("sync/_client.py", "sync/_connection.py", "sync/_events.py")


def _modules() -> dict[str, set[str]]:
    return {str(p.relative_to(SRC)): _imports(p) for p in SRC.rglob("*.py")}


def test_only_the_store_touches_sql_drivers() -> None:
    for module, imports in _modules().items():
        if not module.startswith("store/"):
            assert not imports & {"aiosqlite", "sqlite3", "asyncpg"}, module


def test_only_the_server_and_client_import_websockets() -> None:
    for module, imports in _modules().items():
        if not module.startswith("server/") and module not in ("client.py", *SYNC_CLIENT):
            assert not any(i.split(".")[0] == "websockets" for i in imports), module


def test_the_server_logic_is_transport_neutral() -> None:
    """The routes, the access rules, the sessions and the OpenAPI document serve both
    transports: conveyor's websockets server and the ASGI app (conveyor.asgi)."""
    modules = _modules()
    for module in ("_http.py", "_access.py", "_session.py", "_openapi.py", "_api.py"):
        imports = {i.split(".")[0] for i in modules[f"server/{module}"]}
        assert not imports & {"websockets", "starlette"}, module


def test_the_engine_depends_on_the_store_protocol_not_a_backend() -> None:
    for module, imports in _modules().items():
        if module.startswith("engine/"):
            assert not any("sqlite" in i or "postgres" in i or "server" in i for i in imports), (
                module
            )


def test_the_core_import_path_loads_no_optional_package() -> None:
    """asyncpg (the postgres extra), rich (the cli extra) and prometheus_client (the
    metrics extra) load only when used."""
    code = (
        "import sys, conveyor, conveyor.store, conveyor.server, conveyor.client\n"
        "import conveyor.metrics\n"
        "conveyor.store.store_at('jobs.db')\n"
        "optional = {'asyncpg', 'rich', 'prometheus_client'}\n"
        "print(sorted(optional & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


def test_a_postgresql_url_without_asyncpg_says_what_to_install() -> None:
    """asyncpg is installed here (dev extra), so its absence is staged: a None entry in
    sys.modules makes importing it fail, as it would without the postgres extra."""
    code = (
        "import sys\n"
        "sys.modules['asyncpg'] = None\n"
        "from conveyor import Runtime, StoreUnavailable\n"
        "try:\n"
        "    Runtime('postgresql://localhost/jobs')\n"
        "except StoreUnavailable as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert "pip install 'conveyor[postgres]'" in out.stdout


def _conveyor_imports(module: str, imports: set[str]) -> set[str]:
    """The conveyor modules ``module`` imports, as paths like ``store`` or ``_wire``."""
    depth = module.count("/")
    found: set[str] = set()
    for name in imports:
        if not name.startswith("."):
            if name.startswith("conveyor."):
                found.add(name.removeprefix("conveyor.").split(".")[0])
            continue
        level = len(name) - len(name.lstrip("."))
        target = name.lstrip(".")
        if level - 1 == depth:  # relative to the package root
            found.add(target.split(".")[0])
        elif level == 1 and depth:  # within the module's own subpackage
            found.add(module.split("/")[0])
    return found


def test_the_client_speaks_only_through_the_records_and_the_wire_module() -> None:
    records = {"_errors", "_models", "_states", "_wire", "_limits", "_logging", "_codec"}
    modules = _modules()
    # _calls.py: the clients' transport-free half, shared by the async and the sync one.
    assert _conveyor_imports("_calls.py", modules["_calls.py"]) <= records
    assert _conveyor_imports("client.py", modules["client.py"]) <= records | {"_calls"}
    for module in SYNC_CLIENT:  # sync: the blocking client's own modules
        assert _conveyor_imports(module, modules[module]) <= records | {"_calls", "client", "sync"}


def test_the_wire_module_does_no_io() -> None:
    imports = _modules()["_wire.py"]
    assert not any(i.split(".")[0] in {"websockets", "anyio", "asyncio"} for i in imports)
    assert _conveyor_imports("_wire.py", imports) <= {"_errors", "_models", "_states", "_limits"}


def test_the_layers_import_downwards_only() -> None:
    forbidden = {
        "store": {"engine", "_bus", "server", "cli", "_runtime", "_operations", "_watching"},
        "engine": {"server", "cli", "_runtime", "_operations", "_watching"},
        "server": {"store", "engine", "cli"},
    }
    for module, imports in _modules().items():
        layer = module.split("/")[0]
        if layer in forbidden:
            bad = _conveyor_imports(module, imports) & forbidden[layer]
            assert not bad, (module, bad)


def test_the_engine_reads_queues_as_resolved_specs_not_the_facade() -> None:
    for module, imports in _modules().items():
        if module.startswith("engine/"):
            bad = _conveyor_imports(module, imports) & {"_queue", "_options", "_runtime", "cli"}
            assert not bad, (module, bad)


def _module_graph() -> dict[str, set[str]]:
    """Each conveyor module and the conveyor modules it imports (any import: at module
    level, under TYPE_CHECKING or inside a function). ``from pkg import sub`` counts as
    importing ``pkg.sub``, not the package's __init__."""

    def name_of(path: Path) -> str:
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        return ".".join(["conveyor", *(parts[:-1] if parts[-1] == "__init__" else parts)])

    modules = {name_of(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:
                    base = package.split(".")[: package.count(".") + 2 - node.level]
                    target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
        graph[module] = (deps & set(modules)) - {module}
    return graph


def test_no_import_cycle_among_the_modules() -> None:
    graph = _module_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(" -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert len(graph) > 40  # the graph was read


def test_the_stores_take_every_status_in_their_sql_from_the_transition_table() -> None:
    """No status typed by hand in a store's SQL (store/_rules.py derives them from
    _states.TRANSITIONS); shipped schema migrations are history and may name them."""
    literals = [f"'{status.value}'" for status in JobStatus]
    for path in (SRC / "store").rglob("*.py"):
        if path.name.endswith("_schema.py"):
            continue
        text = path.read_text()
        assert not [lit for lit in literals if lit in text], path.name
