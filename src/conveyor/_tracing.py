"""OpenTelemetry traces through jobs (the ``otel`` extra: opentelemetry-api).

An enqueue makes a producer span, ``send <queue>``; each run of a job a consumer span,
``process <queue>``, per OpenTelemetry's messaging semantic conventions (messaging system
``conveyor``, destination = the queue, operation ``send`` / ``process``, the job id as the
message id). The producer span's W3C trace context (``traceparent``, ``tracestate``) is
stored in the job's ``meta``, so the run's span, in whatever process runs it, continues
the trace of the request that enqueued the job: its parent, and a link as the
conventions ask. A handler's own spans are children of the run's span, and an error the
handler raises is recorded on it.

Without opentelemetry-api installed, ``TRACING`` is None and the runtime's paths test
that once per call: no span, no context, no import. With the API but no tracer provider
set (no SDK configured), ``active()`` is False and no span is made either.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._states import JobStatus
from ._version import VERSION

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ._models import Job
    from .store import Finish

SYSTEM: Final = "conveyor"
# The keys of the W3C trace context in a job's meta (what TraceContextTextMapPropagator
# writes): anything else the application's propagators add is not kept.
CONTEXT_KEYS: Final = ("traceparent", "tracestate")
LOOK_EVERY: Final = 1.0  # seconds between looks for a tracer provider (see active)


class Tracing:
    """The spans conveyor makes, on opentelemetry-api (imported only when installed)."""

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        # What the global provider is until the application sets one (or disables the
        # SDK): every span would be non-recording, so none is made (see active).
        self._unset = (ProxyTracerProvider, NoOpTracerProvider)
        self._active = False
        self._next_look = 0.0  # time.monotonic() at which active() looks again
        # A proxy until the application sets its provider, then that provider's tracer.
        self._tracer = trace.get_tracer("conveyor", VERSION)
        # W3C trace context always, whatever global propagator the application set: the
        # context must read back in a worker that may be configured differently.
        self._propagator = TraceContextTextMapPropagator()

    def active(self) -> bool:
        """Whether the application has set a tracer provider: without one, every span
        is a non-recording one, and making them per job cost the e2e benchmark about a
        sixth of its rate, for nothing.

        Asked per run and per enqueue, so the answer is kept: OpenTelemetry sets the
        global provider once and for all, so once set it stays; until then the provider
        (an environment lookup each time) is looked at again at most every
        ``LOOK_EVERY`` seconds — a provider set after the runtime started is seen within
        that."""
        if self._active:
            return True
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + LOOK_EVERY
            self._active = not isinstance(self._trace.get_tracer_provider(), self._unset)
        return self._active

    @contextlib.contextmanager
    def send(self, queue: str, job_ids: Sequence[str]) -> Iterator[dict[str, str]]:
        """The producer span of one enqueue (a batch for enqueue_many); yields the trace
        context to store in each job's meta (empty when there is nothing to carry)."""
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": queue,
        }
        if len(job_ids) == 1:
            attributes["messaging.message.id"] = job_ids[0]
        else:
            attributes["messaging.batch.message_count"] = len(job_ids)
        kind = self._trace.SpanKind.PRODUCER
        with self._tracer.start_as_current_span(
            f"send {queue}", kind=kind, attributes=attributes
        ) as span:
            carrier: dict[str, str] = {}
            if span.get_span_context().is_valid:
                self._propagator.inject(carrier)
            yield {k: v for k, v in carrier.items() if k in CONTEXT_KEYS}

    @contextlib.contextmanager
    def process(self, job: Job) -> Iterator[Span]:
        """The consumer span of one run of ``job``, current while its handler runs."""
        meta: Mapping[str, str] = getattr(job, "meta", None) or {}
        parent = self._propagator.extract({k: meta[k] for k in CONTEXT_KEYS if k in meta})
        links = []
        sent = self._trace.get_current_span(parent).get_span_context()
        if sent.is_valid:
            links.append(self._trace.Link(sent))
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "messaging.message.delivery_attempt": job.attempts,  # this run's, from 1
        }
        with self._tracer.start_as_current_span(
            f"process {job.queue}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
            # The run's outcome, not an exception escaping, says how it ended: see ended.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def failed(self, exc: BaseException) -> None:
        """Record the handler's error on the current run's span (a no-op outside one)."""
        span = self._trace.get_current_span()
        span.record_exception(exc)

    def ended(self, span: Span, outcome: Finish | None) -> None:
        """Mark how the run ended: its outcome as an attribute, and an error status for
        a failure or a retry, with the error (a cancel or a put-back is no error)."""
        if outcome is None:  # lease lost: another worker's run decides the job
            span.set_attribute("conveyor.job.outcome", "lease lost")
            return
        span.set_attribute("conveyor.job.outcome", outcome.status.value)
        if outcome.status in (JobStatus.FAILED, JobStatus.SCHEDULED):
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome.error))


def _load() -> Tracing | None:
    try:
        return Tracing()
    except ImportError:
        return None


TRACING: Final[Tracing | None] = _load()
