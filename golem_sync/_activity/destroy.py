"""Destroying an activity on a cleanup path: tried again on transient failures, never raising.

yagna's ``DELETE /activity/{id}`` queues the destroy for the provider, then re-reads the
provider's state every 750 ms until it is Terminated (yagna 0.17's ``get_state_wait``), so it
costs 0.75 s at least, 1.5 s when the provider needs longer than one tick. Reading the state
from here instead (a short DELETE, then ``GET .../state``) was measured and not taken: under load
the reads cost yagna more than its own loop, and where requestor and provider share one yagna
node (the devnet) a state read that crosses the exe-unit's Terminated writes the older state back.

Threads: a plain function on the caller's thread (the job's, or the pool's).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from ..errors import YagnaError, YagnaNotFoundError, is_transient
from ..yagna.client import YagnaClient

__all__ = ["destroy_activity"]

logger = logging.getLogger("golem_sync.activity")

#: Tries to destroy an activity when yagna fails transiently (5xx, timeout, unreachable).
DESTROY_TRIES = 3


def destroy_activity(client: YagnaClient, activity_id: str, timeout: float,
                     sleep: Callable[[float], None] = time.sleep) -> bool:
    """Destroy the activity; yagna waits up to ``timeout`` s for the provider on each try.

    Returns True when it is destroyed (or was gone already), False when it could not be (logged,
    never raised: this runs on cleanup paths).
    """
    for attempt in range(DESTROY_TRIES):
        try:
            client.activity.destroy_activity(activity_id, timeout=timeout)
            return True
        except YagnaNotFoundError:
            return True  # gone already
        except YagnaError as exc:
            if not is_transient(exc):
                logger.warning("could not destroy activity %s: %s", activity_id, exc)
                return False
            if attempt + 1 == DESTROY_TRIES:
                logger.error("could not destroy activity %s after %d tries: %s", activity_id, DESTROY_TRIES, exc)
                return False
            logger.info("destroying activity %s failed (%s); trying again", activity_id, exc)
            sleep(0.5 * 2 ** attempt)  # a short, bounded backoff on the cleanup path
    return False  # not reached
