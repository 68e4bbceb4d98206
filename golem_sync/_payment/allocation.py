"""The allocation that pays for every job of one network, kept valid for as long as the network lives.

yagna releases an allocation when its ``timeout`` passes; accepting a debit note or an invoice
from it then fails ("Allocation … not found") and the provider goes unpaid. A network lives for
days in a web worker, so :class:`AllocationKeeper` renews the allocation before it expires: it
first extends the same allocation (``PUT /allocations/{id}``, so nothing else changes) and, where
yagna refuses that, replaces it by a new one with fresh demand decorations (the payment processor
reads the current id at every accept; the old allocation is released). It also replaces it at
once when yagna says it is gone.

Threads: ``open`` and ``close`` run on whichever thread creates/closes the network's services; the
renewal runs on one thread of the keeper's own (``golem-allocation``), which waits on a condition
until the renewal is due, asked for, or the keeper closes. Readers (``allocation_id``,
``decorations``) take a snapshot under the keeper's lock; no lock is held during REST calls.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from decimal import Decimal
from typing import Any, Callable, List, Optional

from .. import _threads as threads
from ..errors import (GolemPaymentError, YagnaError, YagnaNotFoundError, YagnaTimeoutError,
                      YagnaUnreachableError)
from .._options import PaymentOptions
from .._package import Decorations
from ..yagna.client import YagnaClient

__all__ = ["AllocationKeeper", "create_allocation", "demand_decorations", "renew_margin"]

logger = logging.getLogger("golem_sync.payment")


def create_allocation(client: YagnaClient, options: PaymentOptions, address: str) -> Any:
    """Reserve ``options.budget`` on the payment platform for this requestor's identity.

    yagna's POST has no idempotency key, so when its answer is lost (a client timeout after yagna
    acted) the allocation is looked up among this identity's allocations by what was asked for
    (platform, address, amount and the exact expiry sent, which no other request shares) and used.
    What remains: an answer lost AND the lookup failing too leaves that allocation to expire.
    """
    timeout = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=options.allocation_expiration_sec)
    amount = Decimal(str(options.budget))
    try:
        return client.payment.create_allocation(
            total_amount=amount, payment_platform=options.platform(), address=address, timeout=timeout)
    except (YagnaTimeoutError, YagnaUnreachableError) as exc:
        found = _find_created(client, options.platform(), address, amount, timeout)
        if found is not None:
            logger.warning("creating the allocation timed out (%s); found it in yagna: %s", exc, found.allocation_id)
            return found
        raise GolemPaymentError(f"could not create an allocation of {options.budget:g} on {options.platform()}: "
                                f"{exc}") from exc
    except YagnaError as exc:
        raise GolemPaymentError(
            f"could not create an allocation of {options.budget:g} on {options.platform()} for {address}: "
            f"{exc.detail or exc}. Is the account funded (`yagna payment status --network "
            f"{options.resolved_network()}`)?") from exc


def _find_created(client: YagnaClient, platform: str, address: str, amount: Decimal,
                  timeout: dt.datetime) -> Any:
    """The allocation a lost POST made, if yagna lists exactly one that matches the request."""
    try:
        allocations = client.payment.list_allocations()
    except YagnaError:
        return None
    matches = [a for a in allocations
               if a.payment_platform == platform and (a.address or "").lower() == address.lower()
               and a.total_amount == amount and a.timeout is not None
               and abs((a.timeout - timeout).total_seconds()) < 1.0]
    return matches[0] if len(matches) == 1 else None


def demand_decorations(client: YagnaClient, allocation_id: str) -> Decorations:
    """The properties and constraints yagna wants in a demand paid from this allocation."""
    properties, constraints = client.payment.get_demand_decorations([allocation_id])
    return Decorations(dict(properties), list(constraints))


def renew_margin(lifetime: float) -> float:
    """How long before expiry a renewal starts: a fifth of the lifetime, at most 10 minutes."""
    return min(600.0, 0.2 * lifetime)


class AllocationKeeper:
    """Owns the network's allocation: creates it, renews or replaces it, releases it.

    ``on_replaced(allocation)`` is called (on the keeper's thread, no lock held) with a new allocation
    that replaced the old one, e.g. to emit ``allocation_created`` (an extension keeps the same one).
    """

    def __init__(self, client: YagnaClient, options: PaymentOptions, address: str, *,
                 on_replaced: Optional[Callable[[Any], None]] = None) -> None:
        self._client = client
        self._options = options
        self._address = address
        self._on_replaced = on_replaced
        self._cond = threading.Condition()
        self._allocation: Any = None
        self._decorations: Optional[Decorations] = None
        self._expires = 0.0  # monotonic time at which yagna drops the current allocation
        self._replace_asked = False
        self._closing = False
        self._released = False
        self._retired: List[str] = []  # replaced allocations not yet released
        self._thread: Optional[threading.Thread] = None
        self.renewals = 0
        self.replacements = 0

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> Any:
        """Create the allocation and read its decorations; on failure nothing is left reserved."""
        allocation, decorations = self._create()
        with self._cond:
            self._allocation, self._decorations = allocation, decorations
            self._expires = time.monotonic() + self._options.allocation_expiration_sec
        self._thread = threading.Thread(target=self._keep, name=f"{threads.PREFIX}allocation", daemon=True)
        self._thread.start()
        return allocation

    def close(self) -> List[str]:
        """Stop renewing and release every allocation held; returns the ids released."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._client.config.request_timeout * 3 + 5.0)
        with self._cond:
            ids = list(self._retired)
            self._retired.clear()
            if self._allocation is not None and not self._released:
                ids.append(self._allocation.allocation_id)
            self._released = True  # the last allocation stays readable (``allocation``) for reports
        released = []
        for allocation_id in ids:
            if self._release(allocation_id):
                released.append(allocation_id)
        return released

    # -- readers (any thread) --------------------------------------------------------------

    @property
    def allocation(self) -> Any:
        """The current allocation (after ``close``: the last one, released)."""
        with self._cond:
            return self._allocation

    @property
    def allocation_id(self) -> str:
        """The id to pay from now (it changes when the allocation is replaced)."""
        with self._cond:
            if self._allocation is None or self._released:
                raise GolemPaymentError("the network's allocation is released")
            return str(self._allocation.allocation_id)

    @property
    def decorations(self) -> Decorations:
        with self._cond:
            assert self._decorations is not None
            return self._decorations

    def replace_soon(self, reason: object = None) -> None:
        """yagna says the allocation is gone: replace it now (on the keeper's thread; returns at once)."""
        with self._cond:
            if not self._replace_asked:
                logger.warning("allocation %s is gone (%s); replacing it",
                               self._allocation.allocation_id if self._allocation else "?", reason)
            self._replace_asked = True
            self._cond.notify_all()

    # -- the keeper's thread ---------------------------------------------------------------

    def _keep(self) -> None:
        lifetime = float(self._options.allocation_expiration_sec)
        while True:
            with self._cond:
                while not (self._closing or self._replace_asked):
                    due = self._expires - renew_margin(lifetime) - time.monotonic()
                    if due <= 0:
                        break
                    self._cond.wait(due)
                if self._closing:
                    return
                replace, self._replace_asked = self._replace_asked, False
            try:
                if replace or not self._extend(lifetime):
                    self._replace(lifetime)
            except Exception as exc:  # keep trying: a failed renewal must not end the keeper
                logger.error("could not renew the allocation: %s; trying again", exc)
                with self._cond:
                    self._cond.wait(min(30.0, max(1.0, renew_margin(lifetime) / 4)))

    def _extend(self, lifetime: float) -> bool:
        """Move the current allocation's expiry forward; False if yagna will not."""
        current = self.allocation
        if current is None:
            return True
        timeout = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=lifetime)
        try:
            amended = self._client.payment.amend_allocation(current.allocation_id, timeout=timeout)
        except YagnaError as exc:
            logger.info("yagna did not extend allocation %s (%s); replacing it", current.allocation_id, exc)
            return False
        if amended.timeout is not None and amended.timeout < timeout - dt.timedelta(seconds=5):
            logger.info("yagna kept allocation %s's old expiry; replacing it", current.allocation_id)
            return False
        with self._cond:
            self._allocation = amended
            self._expires = time.monotonic() + lifetime
        self.renewals += 1
        logger.info("allocation %s extended by %.0fs", current.allocation_id, lifetime)
        return True

    def _replace(self, lifetime: float) -> None:
        allocation, decorations = self._create()
        with self._cond:
            old, self._allocation, self._decorations = self._allocation, allocation, decorations
            self._expires = time.monotonic() + lifetime
            closing = self._closing
            if old is not None:
                self._retired.append(old.allocation_id)
        self.replacements += 1
        logger.info("allocation %s replaced by %s", old.allocation_id if old else None, allocation.allocation_id)
        self._replaced(allocation)
        if old is not None and not closing:
            if self._release(old.allocation_id):
                with self._cond:
                    if old.allocation_id in self._retired:
                        self._retired.remove(old.allocation_id)

    def _replaced(self, allocation: Any) -> None:
        if self._on_replaced is not None:
            try:
                self._on_replaced(allocation)
            except Exception:
                logger.exception("allocation replacement hook failed")

    # -- REST ------------------------------------------------------------------------------

    def _create(self) -> "tuple[Any, Decorations]":
        allocation = create_allocation(self._client, self._options, self._address)
        try:
            return allocation, demand_decorations(self._client, allocation.allocation_id)
        except BaseException:
            self._release(allocation.allocation_id)  # nobody else knows its id: never leak it
            raise

    def _release(self, allocation_id: str) -> bool:
        try:
            self._client.payment.release_allocation(allocation_id)
            return True
        except YagnaNotFoundError:
            return False  # expired or released already
        except YagnaError as exc:
            logger.warning("could not release allocation %s: %s", allocation_id, exc)
            return False
