"""Publish a demand without leaving a duplicate behind: ``POST /demands``, and after a transient
failure look (``GET /demands``) before posting again.

POST is not idempotent: an answer lost after yagna created the subscription (a reset, a timeout,
a 5xx sent late) leaves a demand we do not know of, and posting again would add a second one that
sits on the market until its ``golem.srv.comp.expiration``, drawing proposals. So
:func:`publish_demand` first lists this node's active demands and adopts the one that matches
ours: the same properties and constraints once both sides are normalised alike (yagna 0.17.6
answers with the properties flattened to dotted keys, numbers as sent, the constraints
verbatim). Since the properties carry the expiration in milliseconds, a demand another process
published is practically never identical; the demands of this network are told apart by a
:class:`HeldDemands`.

Threads: :func:`publish_demand` runs on the caller's thread (a job's, or a market scan's); a
:class:`HeldDemands` is shared by every negotiator and scan of one network and guards its state
with a lock (never held during a REST call or while logging).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from .._cancel import CancelToken, Deadline
from .._pollers import Backoff
from ..errors import YagnaError, YagnaUnreachableError, is_transient
from ..yagna.market import MarketApi

__all__ = ["HeldDemands", "publish_demand", "demand_key"]

logger = logging.getLogger("golem_sync.market")

#: Tries when yagna answers a 5xx or times out (the POST or the look before it). No connection at
#: all (yagna restarting) is waited out within the deadline instead, as the negotiation does.
_PUBLISH_TRIES = 4
#: About 0.25, 0.5, 1 s between tries (at most 1.75 s for the 4 tries), then up to 5 s while yagna is away.
_BACKOFF = Backoff(first_delay=0.25)
_EXPIRATION = "golem.srv.comp.expiration"


class HeldDemands:
    """The demand ids one network holds (published or adopted, not yet withdrawn), and which
    demands its negotiators are posting right now: a look never adopts a sibling's demand, even
    one whose POST has not returned yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Set[str] = set()
        self._posting: "Counter[str]" = Counter()  # demand key -> POSTs in flight

    def __contains__(self, demand_id: object) -> bool:
        with self._lock:
            return demand_id in self._held

    @contextmanager
    def posting(self, key: str) -> Iterator[None]:
        """Around a POST of the demand ``key`` and the :meth:`add` of its id."""
        with self._lock:
            self._posting[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._posting[key] -= 1
                if not self._posting[key]:
                    del self._posting[key]

    def add(self, demand_id: str) -> None:
        with self._lock:
            self._held.add(demand_id)

    def release(self, demand_id: str) -> None:
        """The demand was withdrawn, or yagna forgot it."""
        with self._lock:
            self._held.discard(demand_id)

    def claim(self, key: str, matches: Sequence[str]) -> Tuple[Optional[str], List[str]]:
        """Adopt the one demand of ``matches`` (ids whose demand is ``key``) nobody here holds.

        Returns ``(id, [])`` when adopted, else ``(None, ids not held)``: none, several, or one
        that may be a sibling's whose POST is still in flight.
        """
        with self._lock:
            free = [demand_id for demand_id in matches if demand_id not in self._held]
            if len(free) == 1 and not self._posting[key]:
                self._held.add(free[0])
                return free[0], []
            return None, free


def demand_key(properties: Mapping[str, Any], constraints: str) -> str:
    """A demand, normalised: properties flattened to dotted keys, every number a float, the
    constraints without whitespace."""
    return json.dumps([_flat(properties), "".join(constraints.split())], sort_keys=True, default=str)


def publish_demand(market: MarketApi, body: Mapping[str, Any], held: HeldDemands, token: CancelToken,
                   deadline: Deadline, *, backoff: Optional[Backoff] = None) -> str:
    """Publish ``body`` (``{"properties", "constraints"}``) and return the demand id, held in ``held``.

    A transient failure (:func:`~golem_sync.errors.is_transient`) is tried again after a
    :class:`Backoff` pause (``token.sleep``: a cancel ends it at once), the next try looking
    first: exactly one matching demand not held here is adopted (logged at info); none, or
    several (logged at warning: they are left to expire), and it posts again. The last error is
    raised once ``deadline`` has no time for the next pause, or after ``_PUBLISH_TRIES`` 5xx or
    timeouts; any other error (a 4xx) at once.
    """
    backoff = backoff or _BACKOFF
    key = demand_key(body.get("properties") or {}, str(body.get("constraints") or ""))
    look = False  # an earlier POST may have reached yagna
    given_up: Set[str] = set()  # matches left to expire already (warned once)
    failures = errors = 0
    while True:
        token.raise_if_cancelled()
        try:
            demand_id = _adopt(market, key, held, given_up, body) if look else None
            if demand_id is None:
                with held.posting(key):
                    demand_id = market.subscribe_demand(body)
                    held.add(demand_id)
            return demand_id
        except YagnaError as exc:
            if not is_transient(exc):
                raise
            failures += 1
            if not isinstance(exc, YagnaUnreachableError):
                errors += 1
            delay = backoff.delay(failures)
            left = deadline.remaining()
            if errors >= _PUBLISH_TRIES or (left is not None and left <= delay):
                raise
            log = logger.info if failures == 1 else logger.debug
            log("publishing the demand failed (%s); looking for it, then trying again in %.1fs", exc, delay)
            look = True
            token.sleep(delay)


def _adopt(market: MarketApi, key: str, held: HeldDemands, given_up: Set[str],
           body: Mapping[str, Any]) -> Optional[str]:
    """The matching demand yagna already has, now held; ``None`` to post again. A failure to
    look that is not transient is logged and answered by posting again."""
    try:
        demands = market.list_demands()
    except YagnaError as exc:
        if is_transient(exc):
            raise
        logger.warning("could not look for the demand a failed POST may have created (%s); posting again", exc)
        return None
    matches = [d.demand_id for d in demands
               if d.demand_id not in given_up and demand_key(d.properties, d.constraints) == key]
    adopted, left = held.claim(key, matches)
    if adopted is not None:
        logger.info("demand %s adopted: yagna created it, its answer to POST /demands was lost", adopted)
        return adopted
    if left:
        given_up.update(left)
        logger.warning("demands %s match ours but cannot be told apart (from each other or from one being "
                       "posted); posting again, they are left to expire%s", ", ".join(left), _expiry(body))
    return None


def _expiry(body: Mapping[str, Any]) -> str:
    value = (body.get("properties") or {}).get(_EXPIRATION)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        when = _dt.datetime.fromtimestamp(value / 1000, _dt.timezone.utc)
        return f" at {when.isoformat(timespec='seconds')}"
    return ""


def _flat(properties: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for name, value in properties.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = _number(value)
    return flat


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_number(item) for item in value]
    return value
