"""golem_sync: run work on the Golem Network from ordinary, synchronous Python."""
from __future__ import annotations

import logging

from .errors import *  # noqa: F401,F403  (the hierarchy is the public API)
from .errors import __all__ as _errors_all

from . import signals
from .job import Job, JobState
from .network import GolemNetwork
from .options import (ActivityOptions, AgreementOptions, JobOptions, MarketOptions, PackageOptions,
                      PaymentOptions, VpnOptions, WorkOptions)
from .work import CostSummary, ProviderInfo, RemoteProcess, Result, WorkContext
from .yagna import YagnaConfig

__version__ = "0.1.0.dev0"

# A library never configures logging; it only makes sure "no handler" is not an error.
logging.getLogger("golem_sync").addHandler(logging.NullHandler())

__all__ = [
    "__version__", "GolemNetwork", "Job", "JobState", "WorkContext", "Result", "ProviderInfo",
    "YagnaConfig", "signals", "PackageOptions", "MarketOptions", "AgreementOptions", "ActivityOptions",
    "WorkOptions", "JobOptions", "PaymentOptions", "VpnOptions", "RemoteProcess", "CostSummary",
    *_errors_all,
]
