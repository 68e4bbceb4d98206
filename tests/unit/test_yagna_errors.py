"""Error paths through the real Transport, real sockets and urllib3's retries."""
from __future__ import annotations

import time
from typing import Any, Callable

import pytest

from golem_sync.errors import (
    YagnaAuthError,
    YagnaError,
    YagnaNotFoundError,
    YagnaProtocolError,
    YagnaRequestError,
    YagnaServerError,
    YagnaTimeoutError,
    YagnaUnreachableError,
)
from golem_sync.yagna import YagnaClient

ME = {"identity": "0xabc", "name": "n", "role": "manager"}


def _check_secret(err: BaseException, app_key: str) -> None:
    assert app_key not in str(err) and app_key not in repr(err)


def test_connection_refused(client_for: Callable[..., YagnaClient], closed_port: int, app_key: str) -> None:
    client = client_for(f"http://127.0.0.1:{closed_port}")
    with pytest.raises(YagnaUnreachableError) as info:
        client.identity.me()
    assert f"127.0.0.1:{closed_port}" in str(info.value) and "connection refused" in str(info.value)
    assert info.value.status is None and info.value.path == "/me"
    _check_secret(info.value, app_key)


def test_401_says_app_key_without_showing_it(server: Any, client_for: Callable[..., YagnaClient],
                                             app_key: str) -> None:
    server.script((401, {"message": "Invalid application key"}))
    with pytest.raises(YagnaAuthError) as info:
        client_for(server.url).identity.me()
    assert info.value.status == 401 and "app key" in str(info.value)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {app_key}"
    _check_secret(info.value, app_key)


def test_404(server: Any, client_for: Callable[..., YagnaClient], app_key: str) -> None:
    server.script((404, {"message": "Agreement [A1] not found"}))
    with pytest.raises(YagnaNotFoundError) as info:
        client_for(server.url).market.get_agreement("A1")
    assert info.value.detail == "Agreement [A1] not found" and info.value.method == "GET"
    _check_secret(info.value, app_key)


def test_408_on_long_poll_is_empty_and_elsewhere_an_error(server: Any, client_for: Callable[..., YagnaClient],
                                                          app_key: str) -> None:
    server.script((408, {"message": "timeout"}), (408, {"message": "timeout"}))
    client = client_for(server.url)
    assert client.market.collect_demand_events("D1", timeout=0.2) == []
    with pytest.raises(YagnaTimeoutError) as info:
        client.activity.get_state("act-1")
    assert info.value.status == 408
    _check_secret(info.value, app_key)


def test_500_then_success_on_get_is_retried(server: Any, client_for: Callable[..., YagnaClient]) -> None:
    server.script((500, {"message": "db busy"}), (200, ME))
    assert client_for(server.url, retries=2).identity.me().identity == "0xabc"
    assert [r["method"] for r in server.requests] == ["GET", "GET"]


def test_500_on_post_is_not_retried(server: Any, client_for: Callable[..., YagnaClient], app_key: str) -> None:
    server.script((500, {"message": "internal"}), (201, "D2"))
    with pytest.raises(YagnaServerError) as info:
        client_for(server.url, retries=3).market.subscribe_demand({"properties": {}, "constraints": ""})
    assert len(server.requests) == 1  # the demand may exist: a retry could publish it twice
    assert info.value.status == 500 and "internal" in str(info.value)
    _check_secret(info.value, app_key)


def test_persistent_500_on_get_gives_up(server: Any, client_for: Callable[..., YagnaClient],
                                        app_key: str) -> None:
    server.script(*[(503, {"message": "down"})] * 3)
    with pytest.raises(YagnaServerError) as info:
        client_for(server.url, retries=2).identity.me()
    assert len(server.requests) == 3  # first try + 2 retries
    _check_secret(info.value, app_key)


def test_malformed_json(server: Any, client_for: Callable[..., YagnaClient], app_key: str) -> None:
    server.script((200, b"{'identity': oops"))
    with pytest.raises(YagnaProtocolError) as info:
        client_for(server.url).identity.me()
    assert "not JSON" in str(info.value)
    _check_secret(info.value, app_key)


def test_wrong_shape_is_a_protocol_error(server: Any, client_for: Callable[..., YagnaClient]) -> None:
    server.script((200, {"identity": "0xabc"}))
    with pytest.raises(YagnaProtocolError, match="Identity: field 'name' is missing"):
        client_for(server.url).identity.me()


def test_read_timeout_on_post_is_not_retried(server: Any, client_for: Callable[..., YagnaClient],
                                             app_key: str) -> None:
    server.script((0, None))
    client = client_for(server.url, request_timeout=0.3, retries=3)
    started = time.monotonic()
    with pytest.raises(YagnaTimeoutError) as info:
        client.activity.exec("act-1", [{"terminate": {}}])
    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 1
    assert info.value.status is None and "0.3" in str(info.value)
    _check_secret(info.value, app_key)


def test_long_poll_read_timeout_is_poll_plus_margin(server: Any, client_for: Callable[..., YagnaClient]) -> None:
    server.script((0, None))
    client = client_for(server.url, request_timeout=0.1, long_poll_margin=0.4, retries=0)
    started = time.monotonic()
    with pytest.raises(YagnaTimeoutError):
        client.market.collect_demand_events("D1", timeout=0.3)
    elapsed = time.monotonic() - started
    # Not the 0.1 s ordinary timeout: the client waits for yagna's poll (0.3) plus the margin (0.4).
    assert 0.6 <= elapsed < 3.0, elapsed


def test_other_4xx_is_a_request_error(server: Any, client_for: Callable[..., YagnaClient], app_key: str) -> None:
    server.script((418, {"message": "teapot"}))
    with pytest.raises(YagnaRequestError) as info:
        client_for(server.url).identity.me()
    assert isinstance(info.value, YagnaError)
    assert info.value.status == 418 and "teapot" in str(info.value)
    _check_secret(info.value, app_key)


def test_read_timeout_on_get_is_retried_then_a_timeout_error(server: Any, client_for: Callable[..., YagnaClient],
                                                             app_key: str) -> None:
    server.script((0, None), (0, None))
    client = client_for(server.url, request_timeout=0.2, retries=1)
    with pytest.raises(YagnaTimeoutError) as info:
        client.activity.get_state("act-1")
    assert len(server.requests) == 2  # GET is idempotent: one retry, then give up
    _check_secret(info.value, app_key)


def test_transient_means_trying_again_may_help():
    from golem_sync.errors import (YagnaRequestError, YagnaServerError, YagnaTimeoutError, YagnaUnreachableError,
                                   is_transient)

    assert is_transient(YagnaServerError("busy", status=503))
    assert is_transient(YagnaTimeoutError("slow"))
    assert is_transient(YagnaUnreachableError("down"))
    assert not is_transient(YagnaServerError("not implemented", status=501))  # yagna will never do it
    assert not is_transient(YagnaRequestError("bad", status=400))
