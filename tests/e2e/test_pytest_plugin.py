"""conveyor's pytest plugin, as a user's suite meets it: test files written to a fresh
directory and run by a pytest of their own (pytester, in a subprocess), which must find
the plugin through its ``pytest11`` entry point alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(120)

QUEUES = """
import pytest
from conveyor import Queue

class ExportQueue(Queue):
    name = "exports"
    max_attempts = 2
    backoff = staticmethod(lambda attempt: 600.0)

    async def handle_item(self, item):
        if item.get("flaky") and self.current_job.attempts == 1:
            raise ValueError("first attempt broke")
        if item.get("broken"):
            raise ValueError("always broken")
        return {"rows": len(item["query"])}

@pytest.fixture
def conveyor_queues():
    return [ExportQueue()]
"""


def run(pytester: pytest.Pytester, tests: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(QUEUES)
    pytester.makepyfile(test_user=textwrap.dedent(tests))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_fixtures_drain_and_assert_enqueued(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from conveyor import JobStatus

        pytestmark = pytest.mark.anyio

        async def test_enqueue_and_drain(conveyor_runtime, conveyor_db):
            assert conveyor_db.exists()
            job = await conveyor_runtime.enqueue("exports", {"query": "abc"})
            await conveyor_runtime.drain(timeout=10)
            done = await conveyor_runtime.job(job.id)
            assert (done.status, done.result) == (JobStatus.COMPLETED, {"rows": 3})
            await conveyor_runtime.assert_enqueued("exports", payload={"query": "abc"}, count=1)

        async def test_a_retry_runs_without_waiting(conveyor_runtime, conveyor_clock):
            start = conveyor_clock.now()
            job = await conveyor_runtime.enqueue("exports", {"query": "x", "flaky": True})
            await conveyor_runtime.drain(run_scheduled=True, timeout=10)
            assert (await conveyor_runtime.job(job.id)).attempts == 2
            assert conveyor_clock.now() - start == 600  # the backoff, moved not slept

        USED = []

        async def test_each_test_has_a_fresh_database(conveyor_runtime, conveyor_db):
            await conveyor_runtime.assert_enqueued("exports", count=0)
            USED.append(conveyor_db)

        def test_the_database_was_removed_after_its_test():
            assert USED
            assert not USED[0].exists()
            assert not list(USED[0].parent.glob("conveyor.db*"))

        @pytest.mark.conveyor(inline=True)
        async def test_inline(conveyor_runtime):
            job = await conveyor_runtime.enqueue("exports", {"query": "ab"})
            assert (job.status, job.result) == (JobStatus.COMPLETED, {"rows": 2})
            broken = await conveyor_runtime.enqueue("exports", {"query": "", "broken": True})
            assert broken.status is JobStatus.SCHEDULED  # a retry left: it waits
            assert broken.error == "ValueError: always broken"  # recorded, not raised
        """,
    )
    result.assert_outcomes(passed=5)


def test_a_failing_assert_enqueued_says_what_the_queue_has(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.anyio
        async def test_wrong_payload(conveyor_runtime):
            await conveyor_runtime.enqueue("exports", {"query": "sales"})
            await conveyor_runtime.assert_enqueued("exports", payload={"query": "costs"})
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected at least 1 job on queue 'exports' with a payload"
            " matching {'query': 'costs'}, found 0",
            "*queue 'exports' has 1:",
            "*: {'query': 'sales'}",
        ]
    )


def test_without_queues_the_fixture_says_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(  # a suite that defines no conveyor_queues: the plugin's answers
        test_user="""
        import pytest

        @pytest.mark.anyio
        async def test_it(conveyor_runtime):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named conveyor_queues*"])


def test_the_marker_is_registered_and_options_are_checked(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.conveyor("inline")
        @pytest.mark.anyio
        async def test_positional(conveyor_runtime):
            pass

        @pytest.mark.conveyor(inline="yes")
        @pytest.mark.anyio
        async def test_not_a_bool(conveyor_runtime):
            pass
        """,
        "--strict-markers",
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*takes keyword options only*", "*ValidationError: inline must be True or False*"],
        consecutive=False,
    )


def test_importing_conveyor_does_not_import_pytest() -> None:
    code = "import sys, conveyor, conveyor.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
