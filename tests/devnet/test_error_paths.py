"""Error paths against the real yagna: an unfunded account, an allocation that outlives its expiry.

The fake-yagna tests (tests/unit/test_job_error_paths.py) cover every branch; these prove the
two that depend on what real yagna does: how it refuses an allocation it cannot fund, and what it
does to an allocation whose timeout passes while the network still pays from it.
"""
from __future__ import annotations

import time

import pytest

from golem_sync import GolemPaymentError, JobState

from hygiene import YagnaProbe
from test_job_api import Recorder, echo, make_network, requestor_threads

pytestmark = pytest.mark.devnet


@pytest.fixture
def probe(golem_devnet) -> YagnaProbe:
    return YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)


def test_an_unfunded_budget_fails_the_job_at_once_and_close_is_prompt(golem_devnet, probe):
    """Issue #9 defect 1: the most common first-run mistake ends the job with a clear payment error."""
    before = {a["allocationId"] for a in probe.get("/payment-api/v1/allocations").json()}
    network = make_network(golem_devnet, payment={"network": golem_devnet.payment_network, "budget": 10 ** 9,
                                                  "invoice_wait_sec": 5}).init()
    try:
        job = network.create_job()
        job.start_work(echo)
        with pytest.raises(GolemPaymentError, match="could not create an allocation"):
            job.wait_for_result(timeout=30)
        assert job.state is JobState.REJECTED and job.future.done()
    finally:
        t0 = time.monotonic()
        network.close()
        took = time.monotonic() - t0
    assert took < 5.0
    after = {a["allocationId"] for a in probe.get("/payment-api/v1/allocations").json()}
    assert after <= before, "an allocation was left behind"
    assert requestor_threads() == []


def test_jobs_are_paid_after_the_allocation_s_first_expiry(golem_devnet, probe):
    """Rule 4: a network living past allocation_expiration_sec keeps accepting debit notes and invoices."""
    recorder = Recorder()
    expiry = 12
    network = make_network(golem_devnet, payment={"network": golem_devnet.payment_network,
                                                  "allocation_expiration_sec": expiry,
                                                  "invoice_wait_sec": 20}).init()
    try:
        before = network.create_job()
        before.start_work(echo)
        assert before.wait_for_result(timeout=60) == "Hello, Golem!\n"
        first_allocation = network.allocation_id
        time.sleep(expiry + 3)  # past the first allocation's own timeout
        after = network.create_job()
        after.start_work(echo)
        assert after.wait_for_result(timeout=60) == "Hello, Golem!\n"
        keeper = network._services_obj.keeper
        assert keeper.renewals + keeper.replacements >= 1
    finally:
        t0 = time.monotonic()
        network.close()
        took = time.monotonic() - t0
        recorder.close()
    approved = recorder.ids("agreement-approved", "agreement_id")
    assert len(approved) == 2
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"),
                       recorder.ids("activity-created", "activity_id"), network.allocation_id, invoiced=approved)
    assert not probe.allocation_exists(first_allocation)
    assert took < 25.0
    assert requestor_threads() == []


class _FlakyProxy:
    """A loopback HTTP proxy in front of yagna's REST API that fails chosen calls once with a 500.

    Everything else is forwarded as it is (long polls included, one thread per request).
    """

    def __init__(self, upstream: str, fail_once: "tuple[str, ...]") -> None:
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.failed: "list[str]" = []
        self.seen: "list[str]" = []
        patterns = [re.compile(p) for p in fail_once]
        session = requests.Session()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                key = f"{self.command} {self.path.split('?')[0]}"
                with proxy.lock:
                    proxy.seen.append(key)
                    inject = any(p.search(key) for p in patterns) and key not in proxy.failed
                    if inject:
                        proxy.failed.append(key)
                if inject:
                    data = b'{"message": "injected: payment driver busy"}'
                    self.send_response(500)
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                    upstream = session.request(self.command, proxy.upstream + self.path, data=body,
                                               headers=headers, timeout=120)
                    data = upstream.content
                    self.send_response(upstream.status_code)
                    if upstream.headers.get("Content-Type"):
                        self.send_header("Content-Type", upstream.headers["Content-Type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="flaky-proxy", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_a_failed_accept_is_retried_through_real_yagna(golem_devnet, probe):
    """Rule 3: one 500 on each debit-note and invoice accept: yagna still ends up with them accepted."""
    proxy = _FlakyProxy(golem_devnet.api_url, fail_once=(r"^POST .*/debitNotes/[^/]+/accept$",
                                                         r"^POST .*/invoices/[^/]+/accept$"))
    recorder = Recorder()
    try:
        network = make_network(golem_devnet, yagna={"api_url": proxy.url, "app_key": golem_devnet.app_key},
                               market={"subnet_tag": golem_devnet.subnet, "debit_note_interval_sec": 2}).init()
        try:
            job = network.create_job()
            job.start_work(lambda ctx: ctx.run("sleep 5").stdout)
            job.wait_for_result(timeout=90)
        finally:
            network.close()
    finally:
        recorder.close()
        proxy.close()
    approved = recorder.ids("agreement-approved", "agreement_id")
    probe.assert_clean(recorder.ids("agreement-created", "agreement_id"),
                       recorder.ids("activity-created", "activity_id"), network.allocation_id, invoiced=approved)
    invoice_accepts = [k for k in proxy.seen if "/invoices/" in k and k.endswith("/accept")]
    assert any("/invoices/" in k for k in proxy.failed) and len(invoice_accepts) >= 2
    assert recorder.ids("invoice-accepted", "amount")
    assert any("/debitNotes/" in k for k in proxy.failed)  # notes every 2 s during a 5 s command
    assert recorder.ids("debit-note-accepted", "amount")
    assert job.state is JobState.DONE  # a note left unaccepted would have made the provider end it
