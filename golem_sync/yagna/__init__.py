"""The yagna REST layer: configuration, transport, models and one module per API.

Nothing here knows about jobs; everything above it talks to yagna only through this package.
"""
from ._base import seg
from .activity import ActivityApi, BatchStream
from .client import YagnaClient
from .config import DEFAULT_API_URL, YagnaConfig
from .gsb import GsbApi
from .identity import IdentityApi
from .market import MarketApi
from .net import NetApi
from .payment import PaymentApi
from .sse import EventStream
from .transport import Transport
from .version import VersionApi

__all__ = [
    "seg",
    "DEFAULT_API_URL",
    "YagnaConfig",
    "Transport",
    "YagnaClient",
    "IdentityApi",
    "VersionApi",
    "MarketApi",
    "ActivityApi",
    "BatchStream",
    "EventStream",
    "PaymentApi",
    "NetApi",
    "GsbApi",
]
