"""Which threads are golem_sync's own: every thread it starts is named ``golem-…``.

Calls that wait for golem_sync's threads to finish something (``Job.cancel``, ``GolemNetwork.close``,
``Job.wait_for_result``) ask :func:`owned` first, so that a signal receiver, a done-callback or a
progress callback (all of which run on golem_sync's threads) never waits for the very thread it
runs on: such a call becomes a request, or raises :class:`~golem_sync.errors.GolemUserError` at once.

Every module that starts a thread names it with :data:`PREFIX` (job pool, helper pool, pollers, the
allocation keeper, GSB transfer sockets, process readers, store listeners). Only the job pool's
threads may wait for *another* job (see :mod:`golem_sync._job`).
"""
from __future__ import annotations

import threading

__all__ = ["PREFIX", "owned", "name"]

#: The name prefix of every thread golem_sync starts.
PREFIX = "golem-"


def owned() -> bool:
    """True when the calling thread is one that golem_sync started."""
    return threading.current_thread().name.startswith(PREFIX)


def name() -> str:
    """The calling thread's name (for error messages)."""
    return threading.current_thread().name
