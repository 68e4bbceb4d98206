"""golem_sync: run work on the Golem Network from ordinary, synchronous Python.

The package is lazy (PEP 562): importing ``golem_sync`` (or a light submodule such as
``golem_sync.errors`` or the devnet's pytest plugin) loads only the error hierarchy. The SDK
(``GolemNetwork``, ``Job``, the options, ``WorkContext``, the yagna client and ``requests``) is
imported on first access to one of its names, e.g. ``from golem_sync import GolemNetwork``.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Dict

from .errors import *  # noqa: F401,F403  (the hierarchy is the public API)
from .errors import __all__ as _errors_all

if TYPE_CHECKING:
    from . import signals
    from ._job import Job, JobState
    from ._market.estimate import CostEstimate, ProviderCost
    from ._market.report import MarketReport, ProviderRejection
    from ._market.scan import MarketScan, ScannedOffer
    from ._network import GolemNetwork
    from ._options import (ActivityOptions, AgreementOptions, JobOptions, MarketOptions, PackageOptions,
                          PaymentOptions, VpnOptions, WorkOptions)
    from ._work import Batch, CostSummary, ProviderInfo, RemoteProcess, Result, WorkContext
    from .yagna import YagnaConfig

__version__ = "0.1.0.dev0"

# A library never configures logging; it only makes sure "no handler" is not an error.
logging.getLogger("golem_sync").addHandler(logging.NullHandler())

#: Public name -> the submodule that defines it (imported on first access).
_LAZY: Dict[str, str] = {
    "Job": "._job",
    "JobState": "._state",
    "GolemNetwork": "._network",
    "ProviderPool": "._pool",
    "PoolStats": "._pool",
    "PoolFuture": "._pool",
    "LeaseInfo": "._pool",
    "ActivityOptions": "._options",
    "AgreementOptions": "._options",
    "JobOptions": "._options",
    "MarketOptions": "._options",
    "PackageOptions": "._options",
    "PaymentOptions": "._options",
    "VpnOptions": "._options",
    "WorkOptions": "._options",
    "Batch": "._work",
    "CostSummary": "._work",
    "ProviderInfo": "._work",
    "RemoteProcess": "._work",
    "Result": "._work",
    "WorkContext": "._work",
    "YagnaConfig": ".yagna",
    "MarketScan": "._market.scan",
    "ScannedOffer": "._market.scan",
    "MarketReport": "._market.report",
    "ProviderRejection": "._market.report",
    "CostEstimate": "._market.estimate",
    "ProviderCost": "._market.estimate",
    "Progress": "._progress",
}

__all__ = [
    "__version__", "GolemNetwork", "Job", "JobState", "WorkContext", "Result", "ProviderInfo",
    "YagnaConfig", "signals", "PackageOptions", "MarketOptions", "AgreementOptions", "ActivityOptions",
    "WorkOptions", "JobOptions", "PaymentOptions", "VpnOptions", "RemoteProcess", "CostSummary", "Batch",
    "ProviderPool", "PoolStats", "PoolFuture", "LeaseInfo",
    "MarketScan", "ScannedOffer", "MarketReport", "ProviderRejection", "CostEstimate", "ProviderCost",
    "Progress",
    *_errors_all,
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(module_name, __name__), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    # A submodule as an attribute (``golem_sync.signals``, ``golem_sync._network``, ...): the eager
    # package used to import them all, so ``import golem_sync; golem_sync._job`` kept working.
    if not name.startswith("__"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
