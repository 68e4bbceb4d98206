"""The yagna REST layer: configuration, transport, models and one module per API.

Nothing here knows about jobs; everything above it talks to yagna only through this package.
"""
from .config import DEFAULT_API_URL, YagnaConfig
from .transport import Transport

__all__ = ["DEFAULT_API_URL", "YagnaConfig", "Transport"]
