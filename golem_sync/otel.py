"""OpenTelemetry traces and metrics for a network's jobs (the optional ``otel`` extra).

::

    pip install 'golem_sync[otel]'          # depends on opentelemetry-api only

    from golem_sync import GolemNetwork, otel
    golem = GolemNetwork().init()
    otel.instrument(golem)                  # or GolemNetwork(telemetry=True)

Opt-in on purpose: an application that merely has ``opentelemetry`` installed (another
dependency may bring it) gets nothing it did not ask for, and a network that is not instrumented
never imports ``opentelemetry`` at all (importing this module does not either). Spans and metrics
go through the OpenTelemetry API (``trace.get_tracer("golem_sync", version)``), so whatever
provider the application configured (or the ``tracer_provider``/``meter_provider`` given here)
receives them; without a configured SDK the API's no-op provider drops them.

One span per job (``golem.job``), a child of the span current on the thread that called
``start_work`` (a web request's span, say), with children ``golem.negotiation``,
``golem.agreement`` → ``golem.activity`` → ``golem.batch`` / ``golem.transfer``, and
``golem.agreement`` → ``golem.payment`` (the invoice, accepted after the job ended). A failed or
cancelled job, phase, batch or transfer has status ERROR with its exception recorded. Metrics:
``golem.jobs.started``, ``golem.jobs.ended`` (by ``golem.job.state``), the histograms
``golem.job.duration``, ``golem.negotiation.duration``, ``golem.activity.create.duration``,
``golem.activity.deploy.duration``, ``golem.batch.duration`` (seconds) and the counter
``golem.payment.accepted`` (GLM accepted, debit notes and invoices of the network's agreements).

Threads: receivers run on the threads that send the signals (job threads, pollers, golem-io);
spans are handed between them explicitly (``trace.set_span_in_context``), never through a
thread's current context, and ended outside the instrumentation's lock.
"""
from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import GolemConfigError

if TYPE_CHECKING:
    from ._otel.instrumentation import Instrumentation

__all__ = ["instrument", "uninstrument", "instrumentation_of", "require", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'golem_sync[otel]' (it needs opentelemetry-api)"

_lock = threading.Lock()
_installed: "weakref.WeakKeyDictionary[Any, Instrumentation]" = weakref.WeakKeyDictionary()


def require() -> None:
    """Raise :class:`~golem_sync.GolemConfigError` unless ``opentelemetry-api`` can be imported."""
    _load()


def _load() -> Any:
    try:
        from ._otel import instrumentation
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        raise GolemConfigError(f"OpenTelemetry is not installed: {INSTALL_HINT}") from exc
    return instrumentation


def instrument(golem: Any, *, tracer_provider: Any = None, meter_provider: Any = None) -> "Instrumentation":
    """Trace and measure the jobs of ``golem`` (a :class:`~golem_sync.GolemNetwork`) from now on.

    ``tracer_provider``/``meter_provider`` default to the globally configured ones. Instrumenting
    a network twice returns the first instrumentation. It lasts until :func:`uninstrument` (or
    ``instrumentation.uninstrument()``), or as long as the network lives. Raises
    :class:`~golem_sync.GolemConfigError` when ``opentelemetry-api`` is not installed.
    """
    factory: "Callable[..., Instrumentation]" = _load().Instrumentation
    with _lock:
        existing = _installed.get(golem)
        if existing is not None and existing.active:
            return existing
        ref = weakref.ref(golem)  # the registry must not keep the network alive
        made: "Optional[Instrumentation]" = None
        made = factory(golem, tracer_provider=tracer_provider, meter_provider=meter_provider,
                       on_stop=lambda: _forget(ref, made))
        _installed[golem] = made
    made.start()
    return made


def uninstrument(golem: Any) -> None:
    """Stop tracing ``golem``; spans still open are ended. A no-op if it is not instrumented."""
    with _lock:
        existing = _installed.pop(golem, None)
    if existing is not None:
        existing.uninstrument()


def instrumentation_of(golem: Any) -> "Optional[Instrumentation]":
    """The active instrumentation of ``golem``, if any."""
    with _lock:
        return _installed.get(golem)


def _forget(ref: "weakref.ref[Any]", made: "Optional[Instrumentation]") -> None:
    golem = ref()
    if golem is not None:
        with _lock:
            if _installed.get(golem) is made:
                del _installed[golem]
