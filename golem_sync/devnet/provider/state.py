"""What the devnet provider agent remembers: per-agreement and per-activity records.

The ``*Info`` classes are immutable snapshots handed to callers (tests, the launcher); the
underscore classes are the agent's mutable records, only touched under the agent's lock.
"""
from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

import attrs

__all__ = ["AgreementInfo", "ActivityInfo", "DebitNoteInfo", "InvoiceInfo", "seconds"]


@attrs.frozen
class AgreementInfo:
    """A snapshot of one agreement this provider was asked to approve.

    ``state`` is ``"Pending"`` (not approved yet), ``"Approved"`` or ``"Terminated"``;
    ``terminated_by`` is ``"Requestor"``/``"Provider"`` as yagna reported it (on a single node
    yagna reports ``"Provider"`` for both).
    """

    agreement_id: str
    state: str
    requestor_id: str
    terminated_by: Optional[str]
    activity_ids: Tuple[str, ...]
    invoice_id: Optional[str]
    properties: Mapping[str, Any] = attrs.field(repr=False)


@attrs.frozen
class ActivityInfo:
    """A snapshot of one activity.

    ``state`` is ``"Starting"`` (exe-unit starting), ``"Running"``, ``"Stopped"`` (exe-unit stopped by
    the provider: destroyed, agreement ended, agent stopped), ``"Failed"`` (exe-unit did not start) or
    ``"Refused"`` (created while another activity of its agreement lived: no exe-unit, never invoiced).
    """

    activity_id: str
    agreement_id: str
    state: str
    work_dir: Path
    debit_note_ids: Tuple[str, ...]


@attrs.frozen
class DebitNoteInfo:
    """A debit note this provider issued and sent. ``sent_at`` is ``time.monotonic()``."""

    debit_note_id: str
    agreement_id: str
    activity_id: str
    amount: Decimal
    usage: Tuple[float, ...]
    sent_at: float


@attrs.frozen
class InvoiceInfo:
    """An invoice this provider issued and sent."""

    invoice_id: str
    agreement_id: str
    activity_ids: Tuple[str, ...]
    amount: Decimal


def seconds(value: Any) -> Optional[float]:
    """A negotiated number of seconds, or None when absent or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


class AgreementRecord:
    def __init__(self, agreement_id: str, requestor_id: str, properties: Mapping[str, Any], *,
                 multi_activity: bool = True, expiration: Optional[_dt.datetime] = None) -> None:
        self.agreement_id = agreement_id
        self.requestor_id = requestor_id
        self.properties = dict(properties)  # the agreed offer side: negotiated values live here
        self.state = "Pending"
        self.terminated_by: Optional[str] = None
        self.activity_ids: List[str] = []  # the activities served (and invoiced), in creation order
        self.invoice_id: Optional[str] = None
        self.terminate_scheduled = False
        self.multi_activity = multi_activity  # False: the provider closes it after its first activity
        self.expiration = expiration  # golem.srv.comp.expiration (UTC), None when the demand has none
        self.current_activity: Optional[str] = None  # the one activity allowed at a time
        # Bumped when the idle clock is armed or stopped: a scheduled idle check with an older
        # value is stale (the scheduler has no cancel).
        self.idle_token = 0


class ActivityRecord:
    def __init__(self, activity_id: str, agreement_id: str, work_dir: Path, exeunit: Any) -> None:
        self.activity_id = activity_id
        self.agreement_id = agreement_id
        self.work_dir = work_dir
        self.exeunit = exeunit  # None until the agent built it
        self.state = "Starting"
        self.last_amount = Decimal(0)  # what the last debit note asked: the invoice never goes lower
        self.final_usage: Optional[List[float]] = None
        self.debit_note_ids: List[str] = []
