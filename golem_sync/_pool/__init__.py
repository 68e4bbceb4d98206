"""Warm provider pools (``golem.create_pool``): see :mod:`golem_sync._pool.pool`."""
from .lease import LeaseInfo
from .pool import PoolFuture, PoolStats, ProviderPool

__all__ = ["ProviderPool", "PoolStats", "PoolFuture", "LeaseInfo"]
