"""A real yagna daemon for the REST client's integration tests (marker ``yagna``).

One daemon per module: a fresh temp data dir, free loopback ports (the GSB port below 10000),
the requestor identity plus a second "provider" identity with its own app key, restarted so the
central net binds both. It is stopped by pid at the end. No chain: payment calls that need one
are not exercised here.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from golem_sync.devnet.yagna import NodeIdentity, YagnaNode
from golem_sync.yagna import YagnaClient

# anvil's well-known dev keys #0 and #1: deterministic, public, test-only identities.
REQUESTOR_SECRET = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PROVIDER_SECRET = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.yagna)


def _need_yagna() -> None:
    if shutil.which("yagna") is None:
        pytest.skip("the yagna binary is not installed (pip install golem-node)")


@pytest.fixture(scope="module")
def yagna_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[YagnaNode]:
    """A running node with the requestor and a ``prov`` identity, both bound to the net."""
    _need_yagna()
    node = YagnaNode(Path(tmp_path_factory.mktemp("yagna")), requestor_secret=REQUESTOR_SECRET,
                     app_key="golem-sync-test-requestor-key")
    node.start()
    try:
        node.add_identity("prov", PROVIDER_SECRET)
        node.restart()
        yield node
    finally:
        node.stop()


@pytest.fixture
def provider_identity(yagna_node: YagnaNode) -> NodeIdentity:
    return yagna_node.identities["prov"]


@pytest.fixture
def requestor(yagna_node: YagnaNode) -> Iterator[YagnaClient]:
    with YagnaClient(app_key=yagna_node.app_key, api_url=yagna_node.api_url, retries=1) as client:
        yield client


@pytest.fixture
def provider(yagna_node: YagnaNode, provider_identity: NodeIdentity) -> Iterator[YagnaClient]:
    with YagnaClient(app_key=provider_identity.app_key, api_url=yagna_node.api_url, retries=1) as client:
        yield client


@pytest.fixture
def lone_node(tmp_path: Path) -> Iterator[YagnaNode]:
    """A separate running node (requestor identity only) that a test may stop itself."""
    _need_yagna()
    node = YagnaNode(tmp_path / "lone-yagna", requestor_secret=REQUESTOR_SECRET, app_key="lone-node-test-key")
    node.start()
    try:
        yield node
    finally:
        node.stop()
