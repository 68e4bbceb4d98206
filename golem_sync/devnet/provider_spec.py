"""Old home of :mod:`golem_sync.devnet.provider.spec`, kept so existing imports keep working.

Import from :mod:`golem_sync.devnet.provider` (or ``.provider.spec``) instead; this alias goes
once nothing imports it (tests/devnet/test_job_faults.py still does).
"""
from __future__ import annotations

from .provider.spec import (DEBIT_NOTE_ACCEPT_TIMEOUT, DEBIT_NOTE_INTERVAL, PAYMENT_TIMEOUT, USAGE_VECTOR,
                            ProviderFaults, ProviderSpec, build_offer, counter_properties, demand_problem,
                            format_amount, price)

__all__ = ["ProviderFaults", "ProviderSpec", "USAGE_VECTOR", "DEBIT_NOTE_INTERVAL", "PAYMENT_TIMEOUT",
           "DEBIT_NOTE_ACCEPT_TIMEOUT", "build_offer", "counter_properties", "demand_problem", "price",
           "format_amount"]
