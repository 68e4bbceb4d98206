"""Event pollers across a yagna outage: backoff (exponential, capped, jittered), the same stream
position kept, and one warning + one info per outage however many polls fail (no log storm).

The last tests go through real sockets: a tiny HTTP server stands in for yagna's payment API and
is stopped and started again on the same port, as a restarted yagna is.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Optional

import pytest

from golem_sync._pollers import Backoff, EventPoller, OutageLog
from golem_sync.errors import YagnaAuthError, YagnaServerError, YagnaUnreachableError
from golem_sync.yagna import YagnaClient, YagnaConfig
from golem_sync.yagna.transport import Transport


class Event:
    def __init__(self, n: int) -> None:
        self.n = n
        self.event_date = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=n)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def records(caplog, level: int) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("golem_sync")]


# -- Backoff ---------------------------------------------------------------------------------

def test_backoff_grows_exponentially_up_to_its_cap():
    backoff = Backoff(first_delay=0.5, factor=2.0, max_delay=5.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay(1000) == 5.0  # no overflow, still the cap


def test_backoff_jitter_only_shortens_the_wait_within_its_fraction():
    backoff = Backoff(first_delay=1.0, factor=2.0, max_delay=8.0, jitter=0.3)
    assert backoff.delay(3, rand=lambda: 0.0) == 4.0
    assert backoff.delay(3, rand=lambda: 0.999) == pytest.approx(4.0 * 0.7, rel=1e-3)
    delays = {round(backoff.delay(4), 6) for _ in range(50)}
    assert len(delays) > 1 and all(8.0 * 0.7 <= d <= 8.0 for d in delays)


# -- the poll loop ---------------------------------------------------------------------------

class FlakyFetch:
    """Fails ``fail_times`` polls with ``error``, then hands out one event per poll."""

    def __init__(self, fail_times: int, error: Exception) -> None:
        self.fail_times = fail_times
        self.error = error
        self.afters: List[Optional[dt.datetime]] = []
        self.n = 0

    def __call__(self, after: Optional[dt.datetime], timeout: float) -> List[Event]:
        self.afters.append(after)
        if len(self.afters) <= self.fail_times:
            raise self.error
        self.n += 1
        time.sleep(0.01)
        return [Event(self.n)]


FAST = Backoff(first_delay=0.001, factor=2.0, max_delay=0.004, jitter=0.5)


def test_an_outage_logs_one_warning_and_one_info_however_many_polls_fail(caplog):
    caplog.set_level(logging.DEBUG, logger="golem_sync")
    fetch = FlakyFetch(40, YagnaUnreachableError("cannot reach yagna: connection refused"))
    seen: List[int] = []
    poller = EventPoller("test-events", fetch, lambda e: seen.append(e.n), poll_sec=1, backoff=FAST)
    poller.start()
    try:
        wait_until(lambda: len(seen) >= 3)
    finally:
        poller.stop(5)
    warnings, infos = records(caplog, logging.WARNING), records(caplog, logging.INFO)
    assert len(warnings) == 1 and "unreachable or failing" in warnings[0].getMessage()
    assert "connection refused" in warnings[0].getMessage()
    assert len(infos) == 1 and "answers again" in infos[0].getMessage() and "40 failed polls" in infos[0].getMessage()
    assert len(records(caplog, logging.DEBUG)) >= 39  # the other failures, quietly
    assert seen[:3] == [1, 2, 3]


def test_the_poller_keeps_its_stream_position_through_the_outage():
    start = dt.datetime(2025, 12, 31, tzinfo=dt.timezone.utc)
    fetch = FlakyFetch(5, YagnaUnreachableError("down"))
    seen: List[int] = []
    poller = EventPoller("test-events", fetch, lambda e: seen.append(e.n), poll_sec=1, after=start, backoff=FAST)
    poller.start()
    try:
        wait_until(lambda: len(seen) >= 2)
    finally:
        poller.stop(5)
    assert fetch.afters[:6] == [start] * 6  # every retry asks from where it stood: nothing is lost
    assert fetch.afters[6] == Event(1).event_date


def test_failures_wait_the_backoff_between_polls():
    fetch = FlakyFetch(4, YagnaServerError("500"))
    poller = EventPoller("test-events", fetch, lambda e: None, poll_sec=1,
                         backoff=Backoff(first_delay=0.05, factor=2.0, max_delay=0.1, jitter=0.0))
    started = time.monotonic()
    poller.start()
    try:
        wait_until(lambda: fetch.n >= 1)
    finally:
        poller.stop(5)
    # 0.05 + 0.1 + 0.1 + 0.1 s of backoff before the fifth poll; no busy loop.
    assert time.monotonic() - started >= 0.35
    assert len(fetch.afters) >= 5


def test_pollers_sharing_an_outage_log_say_it_once(caplog):
    caplog.set_level(logging.INFO, logger="golem_sync")
    outages = OutageLog("yagna at http://x")
    fetches = [FlakyFetch(20, YagnaUnreachableError("refused")) for _ in range(3)]
    seen: List[int] = []
    pollers = [EventPoller(f"p{i}", f, lambda e: seen.append(e.n), poll_sec=1, backoff=FAST, outages=outages)
               for i, f in enumerate(fetches)]
    for poller in pollers:
        poller.start()
    try:
        wait_until(lambda: all(f.n >= 2 for f in fetches))
    finally:
        for poller in pollers:
            poller.request_stop()
        for poller in pollers:
            poller.join(5)
    assert len(records(caplog, logging.WARNING)) == 1
    assert len(records(caplog, logging.INFO)) == 1
    assert "yagna at http://x" in records(caplog, logging.WARNING)[0].getMessage()
    assert not outages.down


def test_a_second_outage_is_reported_again(caplog):
    caplog.set_level(logging.INFO, logger="golem_sync")
    clock = [0.0]
    outages = OutageLog(clock=lambda: clock[0])
    for _ in range(2):
        outages.failed("p", YagnaUnreachableError("refused"), 0.5)
        clock[0] += 7.5
        outages.failed("p", YagnaUnreachableError("refused"), 1.0)
        assert outages.down
        outages.recovered("p")
        assert not outages.down
    outages.recovered("p")  # a good poll with no outage says nothing
    assert len(records(caplog, logging.WARNING)) == 2
    infos = records(caplog, logging.INFO)
    assert len(infos) == 2 and "after 7.5s (2 failed polls)" in infos[0].getMessage()


def test_stop_during_a_long_backoff_returns_at_once():
    fetch = FlakyFetch(10 ** 6, YagnaUnreachableError("down"))
    poller = EventPoller("test-events", fetch, lambda e: None, poll_sec=1,
                         backoff=Backoff(first_delay=30.0, max_delay=30.0, jitter=0.0))
    poller.start()
    wait_until(lambda: len(fetch.afters) >= 1)
    started = time.monotonic()
    poller.stop(5)
    assert not poller.alive and time.monotonic() - started < 1.0


def test_an_auth_error_still_stops_the_poller(caplog):
    fetch = FlakyFetch(10 ** 6, YagnaAuthError("401"))
    poller = EventPoller("test-events", fetch, lambda e: None, poll_sec=1, backoff=FAST)
    poller.start()
    poller.join(5)
    assert not poller.alive and len(fetch.afters) == 1
    assert any("rejected the app key" in r.getMessage() for r in records(caplog, logging.ERROR))


# -- through real sockets: a stand-in yagna that goes away and comes back on the same port ------

class _Yagna(BaseHTTPRequestHandler):
    served: List[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).served.append(self.path)
        time.sleep(0.02)  # a short long poll
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class StandIn:
    def __init__(self) -> None:
        self.port = 0
        self.server: Optional[ThreadingHTTPServer] = None

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Yagna)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None


def test_a_real_poller_reconnects_to_a_restarted_yagna_on_the_same_port(caplog):
    caplog.set_level(logging.DEBUG, logger="golem_sync")
    yagna = StandIn()
    yagna.start()
    _Yagna.served = []
    client = YagnaClient(transport=Transport(
        YagnaConfig(app_key="k", api_url=f"http://127.0.0.1:{yagna.port}", retries=0), abortable=True))
    poller = EventPoller(
        "debit-note-events",
        lambda after, timeout: client.payment.collect_debit_note_events(timeout=timeout, after_timestamp=after),
        lambda e: None, poll_sec=0.05, backoff=Backoff(first_delay=0.02, max_delay=0.1),
        after=dt.datetime.now(dt.timezone.utc))
    poller.start()
    try:
        wait_until(lambda: len(_Yagna.served) >= 2)
        yagna.stop()  # yagna goes away: connections refused
        down_at = len(_Yagna.served)
        time.sleep(1.0)
        assert len(records(caplog, logging.WARNING)) == 1
        yagna.start()  # back on the same port
        wait_until(lambda: len(_Yagna.served) >= down_at + 3, timeout=5)
        wait_until(lambda: len(records(caplog, logging.INFO)) == 1)
    finally:
        poller.request_stop()
        client.transport.abort()
        poller.join(5)
        client.close()
        if yagna.server is not None:
            yagna.stop()
    assert not poller.alive
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "debit-note-events" in warnings[0].getMessage()
    failed = [r for r in records(caplog, logging.DEBUG) if "retrying in" in r.getMessage()]
    assert 3 <= len(failed) <= 60  # backed off: ~10 polls per second at the 0.1 s cap, not a spin
    assert all("afterTimestamp=" in path for path in _Yagna.served)


# -- jobs on a network whose (fake) yagna restarts --------------------------------------------

def test_a_job_negotiating_while_yagna_restarts_finds_a_provider_once_it_is_back(golem, fake_yagna, caplog):
    """The demand poll rides out the outage (within the startup timeout) and publishes the demand
    again, since a restarted yagna forgot it."""
    caplog.set_level(logging.INFO, logger="golem_sync")
    network = golem()
    fake_yagna.providers = []  # nothing to sign before the restart: the job is still negotiating
    job = network.create_job()
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    wait_until(lambda: fake_yagna.calls("GET", "/events") and fake_yagna.calls("POST", "/demands"))
    fake_yagna.providers = ["0xprov"]
    fake_yagna.restart(down_sec=1.0)
    assert job.result(timeout=20) == "out\n"
    assert len(fake_yagna.calls("POST", "/demands")) >= 2  # published again after the restart
    assert any("waiting for it" in r.getMessage() for r in records(caplog, logging.INFO))


def test_a_batch_in_flight_when_yagna_goes_away_ends_with_yagna_lost_error(golem, fake_yagna):
    from golem_sync import GolemActivityError, YagnaLostError, YagnaUnreachableError

    network = golem()
    fake_yagna.batch_delay = 30.0  # the command runs until yagna goes away
    job = network.create_job()
    job.start_work(lambda ctx: ctx.run("sleep 30").stdout)
    wait_until(lambda: fake_yagna.calls("POST", "/exec"))
    threading.Thread(target=fake_yagna.restart, args=(1.0,), daemon=True).start()
    with pytest.raises(YagnaLostError) as caught:
        job.result(timeout=20)
    assert isinstance(caught.value, GolemActivityError) and isinstance(caught.value, YagnaUnreachableError)
    assert "yagna became unreachable while batch" in str(caught.value)


def test_with_max_retries_a_job_lost_with_yagna_runs_again_once_it_is_back(golem, fake_yagna):
    network = golem()
    fake_yagna.providers = ["0xprov", "0xprov2"]
    fake_yagna.batch_delay = 30.0
    job = network.create_job(job={"max_retries": 1})
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    wait_until(lambda: fake_yagna.calls("POST", "/exec"))
    fake_yagna.batch_delay = 0.0
    fake_yagna.restart(down_sec=0.5)
    assert job.result(timeout=20) == "out\n"
    assert len(fake_yagna.calls("POST", "/agreements")) >= 2  # a fresh agreement after the restart


def test_a_network_s_pollers_log_one_warning_and_one_info_per_outage(golem, fake_yagna, caplog):
    network = golem(payment={"invoice_wait_sec": 0.2, "event_poll_sec": 0.05})
    job = network.create_job()
    job.start_work(lambda ctx: ctx.run("echo hi").stdout)
    assert job.result(timeout=20) == "out\n"  # the shared services (and their three pollers) run
    caplog.clear()
    caplog.set_level(logging.INFO, logger="golem_sync")
    fake_yagna.restart(down_sec=3.0)
    again = network.create_job()
    again.start_work(lambda ctx: ctx.run("echo again").stdout)
    assert again.result(timeout=20) == "out\n"
    wait_until(lambda: any("answers again" in r.getMessage() for r in records(caplog, logging.INFO)))
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "unreachable or failing" in warnings[0].getMessage(), warnings
    assert len([r for r in records(caplog, logging.INFO) if "answers again" in r.getMessage()]) == 1


# -- a batch's event stream when yagna goes away ------------------------------------------------

def test_an_event_stream_broken_by_yagna_going_away_raises_yagna_lost_error(app_key):
    """yagna never replays a batch stream, so a broken one is not reconnected: the output is lost."""
    import socket

    from golem_sync import YagnaLostError

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        data = json.dumps({"batch_id": "b1", "index": 0, "timestamp": "2024-05-01T10:00:00.5",
                           "kind": {"stdout": "a"}})
        event = f"event: runtime\ndata: {data}\n\n".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(event), event))
        time.sleep(0.2)
        conn.close()  # yagna stops: the chunked stream ends without its last chunk
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    client = YagnaClient(YagnaConfig(app_key=app_key, api_url=f"http://127.0.0.1:{port}", retries=0))
    try:
        with client.activity.stream_batch("act-1", "b1", read_timeout=5.0) as stream:
            got = []
            with pytest.raises(YagnaLostError) as caught:
                for event in stream:
                    got.append(event.kind)
    finally:
        client.close()
    assert got == ["stdout"]
    assert isinstance(caught.value, YagnaUnreachableError) and "event stream broke" in str(caught.value)
    assert app_key not in str(caught.value)
