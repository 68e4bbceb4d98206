"""The devnet has its own error root: a requestor's ``except GolemError`` never catches devnet faults."""
from __future__ import annotations

import inspect

import pytest

from golem_sync import GolemError, GolemTimeoutError
from golem_sync.devnet import errors
from golem_sync.devnet.errors import (ChainError, DevnetConfigError, DevnetError, DevnetTimeoutError,
                                      DevnetUserError, ExeUnitError, GsbError, GsbTimeoutError,
                                      ToolInstallError)


def _devnet_error_classes() -> list:
    return [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
            if issubclass(obj, BaseException) and obj.__module__ == errors.__name__]


def test_every_devnet_error_has_the_devnet_root_and_not_the_sdk_root() -> None:
    classes = _devnet_error_classes()
    assert {ChainError, ExeUnitError, GsbError, ToolInstallError, DevnetConfigError} <= set(classes)
    for cls in classes:
        assert issubclass(cls, DevnetError), cls
        assert not issubclass(cls, GolemError), cls
    assert sorted(c.__name__ for c in classes) == sorted(errors.__all__)


def test_the_errors_are_also_the_stdlib_kinds() -> None:
    assert issubclass(DevnetConfigError, ValueError)
    assert issubclass(GsbTimeoutError, TimeoutError) and issubclass(GsbTimeoutError, DevnetTimeoutError)
    assert not issubclass(GsbTimeoutError, GolemTimeoutError)
    assert DevnetTimeoutError("x", phase="anvil start").phase == "anvil start"


def test_a_devnet_fault_escapes_a_users_except_golem_error() -> None:
    def job_body() -> None:
        raise ChainError("anvil went away")

    with pytest.raises(ChainError):
        try:
            job_body()
        except GolemError:  # what a requestor writes around a job
            pytest.fail("a devnet fault was caught as a GolemError")


def test_the_modules_raise_and_reexport_the_tree() -> None:
    from golem_sync.devnet import chain, ports, tools, yagna

    assert chain.ChainError is ChainError and tools.ToolInstallError is ToolInstallError
    assert yagna.YagnaNodeError is errors.YagnaNodeError
    with pytest.raises(DevnetConfigError):
        ports.free_short_port(low=10, high=5)


def test_launcher_config_and_order_errors_are_devnet_errors() -> None:
    from golem_sync.devnet.launcher import Devnet

    with pytest.raises(DevnetConfigError) as caught:
        Devnet(providers=-1)
    assert not isinstance(caught.value, GolemError)
    with pytest.raises(DevnetUserError):
        Devnet(providers=0).info  # noqa: B018  (not up)
