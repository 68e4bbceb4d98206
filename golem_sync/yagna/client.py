"""``YagnaClient``: one object holding the transport and every API."""
from __future__ import annotations

from typing import Any, Optional

import attrs

from ..errors import GolemConfigError
from .activity import ActivityApi
from .config import YagnaConfig
from .gsb import GsbApi
from .identity import IdentityApi
from .market import MarketApi
from .net import NetApi
from .payment import PaymentApi
from .transport import Transport
from .version import VersionApi

__all__ = ["YagnaClient"]


class YagnaClient:
    """The blocking yagna REST client.

    Build it from a :class:`YagnaConfig`, from the environment (``YAGNA_APPKEY``,
    ``YAGNA_API_URL``) with keyword overrides, or around an existing :class:`Transport`.

    Threads: all API objects are stateless wrappers around one shared :class:`Transport`, so any
    thread may call them concurrently. The thread that created the client owns :meth:`close`.

    Example::

        with YagnaClient(app_key="...") as yagna:
            print(yagna.identity.me().identity)
    """

    def __init__(
        self,
        config: Optional[YagnaConfig] = None,
        *,
        transport: Optional[Transport] = None,
        **config_overrides: Any,
    ) -> None:
        if transport is not None:
            if config is not None or config_overrides:
                raise GolemConfigError("pass either transport= or a config/options, not both")
            self._owns_transport = False
        else:
            if config is None:
                config = YagnaConfig.from_env(**config_overrides)
            elif config_overrides:
                unknown = set(config_overrides) - {f.name for f in attrs.fields(YagnaConfig)}
                if unknown:
                    raise GolemConfigError(f"unknown yagna option(s): {', '.join(sorted(unknown))}")
                config = attrs.evolve(config, **config_overrides)
            transport = Transport(config)
            self._owns_transport = True
        self.transport = transport
        self.config: YagnaConfig = transport.config
        self.identity = IdentityApi(transport)
        self.version = VersionApi(transport)
        self.market = MarketApi(transport)
        self.activity = ActivityApi(transport)
        self.payment = PaymentApi(transport)
        self.net = NetApi(transport)
        self.gsb = GsbApi(transport)

    def __repr__(self) -> str:
        return f"YagnaClient(api_url={self.config.api_url!r})"

    def close(self) -> None:
        """Close pooled connections (only if this client created the transport)."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> "YagnaClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
