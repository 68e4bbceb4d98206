"""Every error the devnet raises, in one tree of its own.

The devnet is a test tool beside the SDK, not part of it: its faults do NOT subclass
:class:`golem_sync.GolemError`, so a requestor's ``except GolemError`` around a job never swallows
a broken devnet (anvil gone, a bad ``Devnet(...)`` argument, a GSB bug). Like the SDK's tree, the
config and timeout errors also subclass ``ValueError`` and ``TimeoutError``::

    DevnetError
    ├── DevnetConfigError (ValueError)     an invalid devnet argument or environment setting
    ├── DevnetUserError                    the devnet API used out of order (not up, up twice)
    ├── DevnetTimeoutError (TimeoutError)  a devnet part did not answer in time (``phase``)
    ├── ChainError                         anvil / JSON-RPC / a transaction
    ├── YagnaNodeError                     the yagna process
    ├── ToolInstallError                   installing anvil (npm)
    ├── ProviderApiError                   yagna answered a provider REST call with an error
    ├── GsbError                           the GSB connection or a call on it
    │   ├── GsbClosedError
    │   ├── GsbTimeoutError (DevnetTimeoutError)
    │   ├── GsbCallError                   the bus answered a non-zero code (``code``)
    │   ├── GsbServiceError                a service answered ``{"Err": ...}`` (``error``)
    │   └── GftpError                      a gftp transfer
    ├── ExeUnitError                       the exe-unit emulator, or one of its commands
    └── TransferError                      a ``transfer`` command

This module imports nothing from golem_sync.
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "DevnetError",
    "DevnetConfigError",
    "DevnetUserError",
    "DevnetTimeoutError",
    "ChainError",
    "YagnaNodeError",
    "ToolInstallError",
    "ProviderApiError",
    "GsbError",
    "GsbClosedError",
    "GsbTimeoutError",
    "GsbCallError",
    "GsbServiceError",
    "GftpError",
    "ExeUnitError",
    "TransferError",
]


class DevnetError(Exception):
    """Root of every error the devnet raises (not a :class:`golem_sync.GolemError`)."""


class DevnetConfigError(DevnetError, ValueError):
    """A devnet argument or environment setting is invalid. The message names it."""


class DevnetUserError(DevnetError):
    """The devnet API was used out of order (e.g. ``info`` before ``up()``)."""


class DevnetTimeoutError(DevnetError, TimeoutError):
    """A devnet part did not answer in time; ``phase`` names what was waited for."""

    def __init__(self, message: str, *, phase: Optional[str] = None) -> None:
        super().__init__(message)
        self.phase = phase


class ChainError(DevnetError):
    """The local chain failed: anvil did not start, a JSON-RPC call or a transaction failed."""


class YagnaNodeError(DevnetError):
    """The devnet's yagna process could not be started, configured or stopped."""


class ToolInstallError(DevnetError):
    """A devnet tool could not be installed (npm failed or is missing)."""


class ProviderApiError(DevnetError):
    """yagna answered a provider call with an error status (or not at all)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class GsbError(DevnetError):
    """A GSB connection or call failed."""


class GsbClosedError(GsbError):
    """The connection is closed (by us, or the router went away)."""


class GsbTimeoutError(GsbError, DevnetTimeoutError):
    """No reply arrived in time."""


class GsbCallError(GsbError):
    """The bus answered a call with a non-zero code (400: no such service, 500: service failure)."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class GsbServiceError(GsbError):
    """A service answered ``{"Err": error}``; ``error`` is the decoded error value."""

    def __init__(self, message: str, *, error: Any) -> None:
        super().__init__(message)
        self.error = error


class GftpError(GsbError):
    """A gftp transfer failed (bad URL, remote error, short read, ...)."""


class ExeUnitError(DevnetError):
    """The exe-unit emulator could not start, or a command failed (the text becomes the result
    message)."""


class TransferError(DevnetError):
    """A transfer command could not be carried out (the batch gets an Error result)."""
