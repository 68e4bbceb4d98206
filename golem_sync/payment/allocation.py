"""The allocation that pays for every job of one network."""
from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from ..errors import GolemPaymentError, YagnaError
from ..options import PaymentOptions
from ..package import Decorations
from ..yagna.client import YagnaClient

__all__ = ["create_allocation", "demand_decorations"]

logger = logging.getLogger("golem_sync.payment")


def create_allocation(client: YagnaClient, options: PaymentOptions, address: str) -> Any:
    """Reserve ``options.budget`` on the payment platform for this requestor's identity."""
    timeout = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=options.allocation_expiration_sec)
    try:
        return client.payment.create_allocation(
            total_amount=Decimal(str(options.budget)), payment_platform=options.platform(),
            address=address, timeout=timeout)
    except YagnaError as exc:
        raise GolemPaymentError(
            f"could not create an allocation of {options.budget:g} on {options.platform()} for {address}: "
            f"{exc.detail or exc}. Is the account funded (`yagna payment status --network "
            f"{options.resolved_network()}`)?") from exc


def demand_decorations(client: YagnaClient, allocation_id: str) -> Decorations:
    """The properties and constraints yagna wants in a demand paid from this allocation."""
    properties, constraints = client.payment.get_demand_decorations([allocation_id])
    return Decorations(dict(properties), list(constraints))
