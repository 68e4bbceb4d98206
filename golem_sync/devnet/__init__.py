"""An offline Golem network on the real yagna daemon, for tests and demos.

Installed with the ``devnet`` extra (``pip install 'golem_sync[devnet]'``). The core of
golem_sync never imports this package.

    from golem_sync.devnet import Devnet

    with Devnet(providers=2) as net:
        os.environ.update(net.env())   # YAGNA_API_URL, YAGNA_APPKEY, YAGNA_SUBNET, ...
        ...

Command line: ``python -m golem_sync.devnet --help``; pytest: the ``golem_devnet`` fixture.

Everything here runs on the host, unsandboxed: providers execute requestors' commands as the
current user. It is a test network, not a sandbox.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .launcher import Devnet, DevnetInfo, DevnetProviderInfo

__all__ = ["Devnet", "DevnetInfo", "DevnetProviderInfo"]

#: Old names kept importable for one release (``ProviderInfo`` collided with golem_sync.ProviderInfo).
_RENAMED = {"ProviderInfo": "DevnetProviderInfo"}


def __getattr__(name: str) -> Any:
    # Lazy: importing golem_sync.devnet (e.g. for the pytest plugin) must stay cheap.
    if name in __all__ or name in _RENAMED:
        import warnings

        from . import launcher

        if name in _RENAMED:
            warnings.warn(f"golem_sync.devnet.{name} is now {_RENAMED[name]}", DeprecationWarning, stacklevel=2)
            name = _RENAMED[name]
        return getattr(launcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
