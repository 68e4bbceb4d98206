"""YagnaClient construction, identity/version/net/gsb calls, and secrecy of the app key."""
from __future__ import annotations

from typing import Any

import pytest
import responses

from golem_sync.errors import GolemConfigError
from golem_sync.yagna import Transport, YagnaClient, YagnaConfig

ROOT = "http://127.0.0.1:7465"


def test_identity_and_version(client: YagnaClient, mocked: responses.RequestsMock, sent: Any, app_key: str, calls: Any) -> None:
    mocked.get(f"{ROOT}/me", json={"identity": "0xabc", "name": "default", "role": "manager"})
    mocked.get(f"{ROOT}/version/get", json={"current": {"version": "0.17.6", "name": "n", "seen": False,
                                                         "releaseTs": "2024-01-01T00:00:00"}, "pending": None})
    assert client.identity.me().identity == "0xabc"
    assert sent(0)[:2] == ("GET", "/me")
    assert calls()[0].request.headers["Authorization"] == f"Bearer {app_key}"
    assert client.version.get().current.version == "0.17.6"


def test_net_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any) -> None:
    N = f"{ROOT}/net-api/v1"
    net = {"id": "n1", "ip": "192.168.0.0/24", "mask": "255.255.255.0", "gateway": "192.168.0.1"}
    mocked.post(f"{N}/net", json=net)
    mocked.get(f"{N}/net/n1", json=net)
    mocked.get(f"{N}/net", json=[net])
    mocked.post(f"{N}/net/n1/nodes", status=200)
    mocked.get(f"{N}/net/n1/nodes", json=[{"id": "0xprov", "ip": "192.168.0.2"}])
    mocked.delete(f"{N}/net/n1/nodes/0xprov", status=200)
    mocked.post(f"{N}/net/n1/addresses", status=200)
    mocked.get(f"{N}/net/n1/addresses", json=[{"ip": "192.168.0.1"}])
    mocked.delete(f"{N}/net/n1", status=200)
    assert client.net.create_network("192.168.0.0", "255.255.255.0").gateway == "192.168.0.1"
    assert sent(0)[3] == {"ip": "192.168.0.0", "mask": "255.255.255.0"}
    assert client.net.get_network("n1").id == "n1"
    assert [n.id for n in client.net.list_networks()] == ["n1"]
    client.net.add_node("n1", "0xprov", "192.168.0.2")
    assert sent(3)[3] == {"id": "0xprov", "ip": "192.168.0.2"}
    assert client.net.list_nodes("n1")[0].ip == "192.168.0.2"
    client.net.remove_node("n1", "0xprov")
    client.net.add_address("n1", "192.168.0.1")
    assert sent(6)[3] == {"ip": "192.168.0.1"}
    assert client.net.list_addresses("n1")[0].ip == "192.168.0.1"
    client.net.remove_network("n1")
    assert client.net.websocket_uri("n1", "192.168.0.2", 22) == "ws://127.0.0.1:7465/net-api/v1/net/n1/tcp/192.168.0.2/22"


def test_gsb_calls(client: YagnaClient, mocked: responses.RequestsMock, sent: Any, app_key: str) -> None:
    G = f"{ROOT}/gsb-api/v1"
    mocked.post(f"{G}/services", json={"listen": {"on": "/public/gftp/x", "components": ["GetChunk"]},
                                       "servicesId": "svc-1"}, status=201)
    mocked.delete(f"{G}/services/svc-1", status=200)
    assert client.gsb.bind_services("/public/gftp/x", ["GetMetadata", "GetChunk"]) == "svc-1"
    assert sent(0)[3] == {"listen": {"on": "/public/gftp/x", "components": ["GetMetadata", "GetChunk"]}}
    client.gsb.unbind_services("svc-1")
    url = client.gsb.websocket_url("svc-1")
    assert url == f"ws://127.0.0.1:7465/gsb-api/v1/services/svc-1?authToken={app_key}"
    with pytest.raises(GolemConfigError):
        client.gsb.bind_services("/public/x", [])


def test_https_becomes_wss() -> None:
    with YagnaClient(app_key="k", api_url="https://yagna.example:443") as c:
        assert c.net.websocket_uri("n", "10.0.0.2", 80).startswith("wss://yagna.example:443/net-api/v1/")


def test_client_from_env_and_overrides(monkeypatch: pytest.MonkeyPatch, app_key: str) -> None:
    monkeypatch.setenv("YAGNA_APPKEY", app_key)
    monkeypatch.setenv("YAGNA_API_URL", "http://127.0.0.1:9999")
    with YagnaClient(request_timeout=7.0) as c:
        assert c.config.app_key == app_key and c.config.api_url == "http://127.0.0.1:9999"
        assert c.config.request_timeout == 7.0
    base = YagnaConfig(app_key=app_key)
    with YagnaClient(base, retries=0) as c2:
        assert c2.config.retries == 0 and c2.config.api_url == base.api_url
    with pytest.raises(GolemConfigError, match="unknown yagna option"):
        YagnaClient(base, no_such_option=1)


def test_client_with_a_shared_transport_does_not_close_it(app_key: str) -> None:
    transport = Transport(YagnaConfig(app_key=app_key))
    closed = []
    transport.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with YagnaClient(transport=transport) as c:
        assert c.transport is transport
    assert closed == []
    with pytest.raises(GolemConfigError):
        YagnaClient(YagnaConfig(app_key=app_key), transport=transport)


def test_missing_app_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YAGNA_APPKEY", raising=False)
    with pytest.raises(GolemConfigError, match="app_key"):
        YagnaClient()


def test_repr_and_str_never_show_the_app_key(client: YagnaClient, app_key: str) -> None:
    texts = [repr(client), str(client), repr(client.config), str(client.config), repr(client.transport)]
    texts += [repr(api) for api in (client.identity, client.version, client.market, client.activity,
                                    client.payment, client.net, client.gsb)]
    for text in texts:
        assert app_key not in text, text
    assert "127.0.0.1:7465" in repr(client)


def test_a_netrc_entry_for_the_yagna_host_does_not_replace_the_app_key(client: YagnaClient,
                                                                       mocked: responses.RequestsMock,
                                                                       calls: Any, app_key: str,
                                                                       tmp_path: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # requests swaps a plain Authorization header for Basic auth from ~/.netrc when the host has an entry.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    mocked.get(f"{ROOT}/me", json={"identity": "0xabc", "name": "default", "role": "manager"})
    client.identity.me()
    assert calls()[0].request.headers["Authorization"] == f"Bearer {app_key}"


def test_a_proxy_from_the_environment_is_used_for_yagna(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment is read once, when the client is made (not on every call), and still honoured.
    for var in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    server.script((200, {"identity": "0xabc", "name": "default", "role": "manager"}))
    with YagnaClient(YagnaConfig(app_key="k", api_url="http://yagna.invalid:7465", retries=0)) as client:
        assert client.identity.me().identity == "0xabc"
    assert server.requests[0]["path"] == "http://yagna.invalid:7465/me"  # an absolute URI: a proxy request


def test_no_proxy_keeps_yagna_off_the_proxy(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: using it would fail
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server.script((200, {"identity": "0xabc", "name": "default", "role": "manager"}))
    with YagnaClient(YagnaConfig(app_key="k", api_url=server.url, retries=0)) as client:
        assert client.identity.me().identity == "0xabc"
    assert server.requests[0]["path"] == "/me"
