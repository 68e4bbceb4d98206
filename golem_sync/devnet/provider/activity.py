"""The provider's activity events: CreateActivity / DestroyActivity from yagna.

Threads: :meth:`ActivityWatcher.run` runs on the agent's *activity* thread. It long-polls
``GET /activity-api/v1/events`` (``afterTimestamp`` is mandatory there) and calls ``on_create`` on
that same thread. ``on_destroy`` runs on a small pool of destroy threads, as ya-provider shuts its
exe-units down concurrently: a requestor that destroys a hundred activities at once waits for
each exe-unit's own shutdown, not for the ones queued before it. The loop ends within one poll
timeout after the stop event is set, then waits for the destroys in progress (queued ones are
dropped: the agent's stop ends every exe-unit itself).
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Set, Tuple

from .rest import ProviderRest, collect_events

__all__ = ["ActivityWatcher", "event_kind"]

logger = logging.getLogger("golem_sync.devnet.provider")

#: Destroys handled at once per provider (ya-provider has no such cap; a few threads suffice here).
DESTROY_THREADS = 8


def event_kind(event: Mapping[str, Any]) -> str:
    """The event type: yagna sends ``{"CreateActivity": {...}}``; the spec says a plain string."""
    kind = event.get("eventType")
    if isinstance(kind, Mapping) and kind:
        return str(next(iter(kind)))
    return str(kind or "")


class ActivityWatcher:
    """Reports activity creation and destruction requests addressed to this provider identity."""

    def __init__(
        self,
        rest: ProviderRest,
        *,
        stop: threading.Event,
        on_create: Callable[[str, str], None],
        on_destroy: Callable[[str, str], None],
        poll_timeout: float,
        label: str,
    ) -> None:
        self._rest = rest
        self._stop = stop
        self._on_create = on_create
        self._on_destroy = on_destroy
        self._poll_timeout = poll_timeout
        self._label = label
        self._seen: Set[Tuple[str, str]] = set()
        self._destroyers: ThreadPoolExecutor  # made by run(), on the activity thread

    def run(self) -> None:
        """The activity thread: collect provider activity events until stopped."""
        self._destroyers = ThreadPoolExecutor(DESTROY_THREADS, thread_name_prefix=f"{self._label}-destroy")
        try:
            collect_events(self._rest, self._stop, "activity", "/events", poll_timeout=self._poll_timeout,
                           handle=self._handle, label=self._label, what="activity")
        finally:
            # The agent stops every exe-unit itself: destroys not begun by now are dropped.
            self._destroyers.shutdown(wait=True, cancel_futures=True)

    def _destroy(self, activity_id: str, agreement_id: str) -> None:
        try:
            self._on_destroy(activity_id, agreement_id)
        except Exception:  # one failed destroy must not go unseen, nor stop the others
            logger.exception("%s: destroying activity %s failed", self._label, activity_id)

    def _handle(self, event: Mapping[str, Any]) -> None:
        kind = event_kind(event)
        activity_id = event.get("activityId")
        agreement_id = event.get("agreementId")
        if not isinstance(activity_id, str) or not isinstance(agreement_id, str):
            return
        if (activity_id, kind) in self._seen:
            return  # the afterTimestamp window may hand the same event back once
        self._seen.add((activity_id, kind))
        if kind == "CreateActivity":
            self._on_create(activity_id, agreement_id)
        elif kind == "DestroyActivity":
            self._destroyers.submit(self._destroy, activity_id, agreement_id)
        else:
            logger.debug("%s: ignoring activity event %s", self._label, kind)
