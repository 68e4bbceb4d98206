"""MarketApi's market-scan calls: method, path, query and body, and how answers are parsed."""
from __future__ import annotations

from typing import Any

import pytest
import responses

from golem_sync.errors import YagnaNotFoundError, YagnaProtocolError, YagnaServerError
from golem_sync.yagna import YagnaClient

M = "http://127.0.0.1:7465/market-api/v1"
TS = "2024-05-01T10:00:00Z"
OFFER = {"offerId": "O1", "providerId": "0xprov", "timestamp": TS, "constraints": "(golem.node.debug.subnet=x)",
         "properties": {"golem.node.id.name": "p1", "golem.inf.cpu.threads": 4}}


def test_begin_collect_and_end_scan(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    mocked.post(f"{M}/scan", json="7", status=201)
    mocked.get(f"{M}/scan/7/events", json=[OFFER])
    mocked.delete(f"{M}/scan/7", status=204)
    assert client.market.begin_scan("(golem.node.debug.subnet=x)", idle_timeout=40) == "7"
    assert sent(0) == ("POST", "/market-api/v1/scan", {},
                       {"type": "offer", "constraints": "(golem.node.debug.subnet=x)", "timeout": 40})
    offers = client.market.collect_scan("7", timeout=2.5, max_events=50)
    assert sent(1) == ("GET", "/market-api/v1/scan/7/events", {"timeout": "2.5", "maxEvents": "50"}, None)
    assert [(o.offer_id, o.provider_id, o.properties["golem.inf.cpu.threads"]) for o in offers] == [("O1", "0xprov", 4)]
    client.market.end_scan("7")
    assert sent(2)[:2] == ("DELETE", "/market-api/v1/scan/7")


def test_begin_scan_without_constraints_sends_only_the_type(client: YagnaClient, mocked: responses.RequestsMock,
                                                            sent: Any) -> None:
    mocked.post(f"{M}/scan", json="0", status=201)
    assert client.market.begin_scan() == "0"
    assert sent()[3] == {"type": "offer"}


def test_collect_scan_408_or_empty_is_no_offers(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{M}/scan/7/events", status=408, json={"message": "timeout"})
    mocked.get(f"{M}/scan/8/events", json=[])
    assert client.market.collect_scan("7", timeout=0.1) == []
    assert client.market.collect_scan("8", timeout=0.1) == []


def test_scan_errors_are_typed(client: YagnaClient, mocked: responses.RequestsMock) -> None:
    mocked.get(f"{M}/scan/9/events", status=404, json={"message": "Iterator with id \"9\" not found"})
    mocked.post(f"{M}/scan", status=501, json={"message": "not implemented"})
    mocked.get(f"{M}/scan/5/events", json=[{"offerId": "O1"}])
    with pytest.raises(YagnaNotFoundError, match="not found"):
        client.market.collect_scan("9", timeout=0.1)
    with pytest.raises(YagnaServerError) as info:
        client.market.begin_scan()
    assert info.value.status == 501
    with pytest.raises(YagnaProtocolError, match="Offer"):
        client.market.collect_scan("5", timeout=0.1)
