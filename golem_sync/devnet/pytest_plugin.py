"""pytest plugin ``golem_devnet``: a session-wide offline Golem devnet for requestor tests.

Registered through the ``pytest11`` entry point, so installing golem_sync with the ``devnet``
extra makes the ``golem_devnet`` fixture available everywhere::

    def test_my_job(golem_devnet):
        run_job(api_url=golem_devnet.api_url, app_key=golem_devnet.app_key, subnet=golem_devnet.subnet)

The fixture yields :class:`golem_sync.devnet.launcher.DevnetInfo` (``.env()`` gives the
``YAGNA_*`` variables) and brings the devnet down at the end of the session;
``golem_devnet_control`` is the same devnet's :class:`~golem_sync.devnet.launcher.Devnet` (e.g.
``golem_devnet_control.restart_requestor(down_sec=5)`` to restart its yagna). The devnet runs a
fault-injecting proxy in front of yagna: ``golem_devnet.via_proxy()`` (or ``.env(via_proxy=True)``)
points a requestor at it, and the ``golem_devnet_proxy`` fixture hands out its rule API
(``add_rule``, ``remove_rule``, ``clear``, ``rules``, ``hits``; rules are cleared before and after
each test)::

    def test_survives_a_500(golem_devnet, golem_devnet_proxy):
        golem_devnet_proxy.add_rule(path="/activity-api/v1/activity", method="POST", status=500, nth=1)
        run_job(api_url=golem_devnet.via_proxy().api_url, ...)

The option ``--golem-devnet-providers N`` (default 2) sets how many providers it runs.

Importing this module is cheap and never fails when the devnet extra is missing: the devnet is
imported only when a test asks for the fixture (which is then skipped if yagna is not installed).
The devnet runs on the host, unsandboxed: it is a test network.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

__all__ = ["golem_devnet", "golem_devnet_control", "golem_devnet_proxy"]


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("golem_devnet", "offline Golem devnet (golem_sync)")
    group.addoption(
        "--golem-devnet-providers",
        action="store",
        type=int,
        default=2,
        help="number of providers in the golem_devnet fixture's devnet (default: 2)",
    )


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "devnet: needs the offline Golem devnet (real yagna, anvil)")


@pytest.fixture(scope="session")
def golem_devnet_control(request: Any) -> Iterator[Any]:
    """The running :class:`~golem_sync.devnet.launcher.Devnet` behind ``golem_devnet`` (same one),
    for tests that act on it: ``golem_devnet_control.restart_requestor(down_sec=5)``,
    ``stop_requestor()`` / ``start_requestor()``, ``agents``."""
    try:
        from golem_sync.devnet.errors import DevnetConfigError
        from golem_sync.devnet.launcher import Devnet
        from golem_sync.devnet.yagna import find_yagna

        find_yagna()
    except (ImportError, DevnetConfigError) as exc:
        pytest.skip(f"the golem_sync devnet is not available (pip install 'golem_sync[devnet]'): {exc}")
    providers = request.config.getoption("--golem-devnet-providers")
    net = Devnet(providers=providers, proxy=True)
    try:
        net.up()
        yield net
    finally:
        net.down()


@pytest.fixture(scope="session")
def golem_devnet(golem_devnet_control: Any) -> Any:
    """A running devnet's connection settings (``DevnetInfo``), shared by the whole session."""
    return golem_devnet_control.info


@pytest.fixture
def golem_devnet_proxy(golem_devnet: Any) -> Iterator[Any]:
    """The rule API of the session devnet's fault proxy (a ``FaultProxyClient``), without rules."""
    proxy = golem_devnet.proxy
    proxy.clear()
    try:
        yield proxy
    finally:
        proxy.clear()
