"""The Flask example's live job page, in a real headless chromium, served by gunicorn with two
workers on the devnet: start the demo job from the page, see its progress advance, cancel it from
the page and see it end as cancelled; a job whose output is HTML shows it as text.

The browser is Debian's chromium (``.ci/install-servers.sh`` installs it when run as root), driven
over the Chrome DevTools protocol with websocket-client, a dependency golem_sync already has: no
driver binary and no extra Python package, so nothing can try to download a browser or driver.
A screenshot of every step is written to the test's tmp dir (its path is printed on failure).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, List

import pytest
import requests
import websocket

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "store"))
sys.path.insert(0, os.path.dirname(__file__))

from hygiene import YagnaProbe  # noqa: E402
from test_gunicorn import Gunicorn  # noqa: E402  (gunicorn serving an example, stopped by pid)

from golem_sync.store import open_store  # noqa: E402

CHROMIUM = shutil.which("chromium")

pytestmark = [pytest.mark.devnet,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: run "
                                 ".ci/install-servers.sh as root to test the Flask page in a browser")]


class Browser:
    """Headless chromium and one page, driven over the DevTools protocol; stopped by pid."""

    def __init__(self, profile: str, log_path: str, timeout: float = 30.0) -> None:
        os.makedirs(profile)
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--window-size=1280,900",
             "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._id = 0
        try:
            port = self._port(os.path.join(profile, "DevToolsActivePort"), timeout)
            targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout,
                                                  suppress_origin=True)
        except BaseException:
            self.close()
            raise

    def _port(self, path: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:  # chromium writes its DevTools port to this file once it listens
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except FileNotFoundError:
                pass
            assert self.proc.poll() is None, f"chromium exited with {self.proc.returncode}; see {self.log.name}"
            assert time.monotonic() < deadline, f"chromium did not open its DevTools port; see {self.log.name}"
            time.sleep(0.1)

    def call(self, method: str, **params: Any) -> Any:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:  # anything else is an event: not asked for
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30.0) -> Any:
        """The first truthy value of ``expression``, read every 0.1 s (the page has no way to call us)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"the page did not show {what} within {timeout:g} s"
            time.sleep(0.1)

    def screenshot(self, path: str) -> str:
        import base64

        with open(path, "wb") as f:
            f.write(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # chromium's own process group: its helpers too
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def browser(tmp_path):
    b = Browser(str(tmp_path / "chromium-profile"), str(tmp_path / "chromium.log"))
    yield b
    b.close()


def row(job_id: str, js: str) -> str:
    """A JavaScript expression on the job's row ``tr`` (null while the page has no such row)."""
    return f"(() => {{ const tr = document.querySelector('tr[data-job-id={json.dumps(job_id)}]'); " \
           f"return tr && ({js}); }})()"


def test_start_watch_and_cancel_a_job_from_the_live_page(golem_devnet, browser, tmp_path):
    spec = str(tmp_path / "jobs.db")
    server = Gunicorn("flask", golem_devnet, spec, str(tmp_path / "gunicorn.log"))
    shots: List[str] = []

    def shot(name: str) -> None:
        shots.append(browser.screenshot(str(tmp_path / f"{len(shots) + 1:02d}-{name}.png")))

    try:
        browser.call("Page.navigate", url=server.url + "/")
        browser.wait_for("document.getElementById('status')?.textContent.includes('job(s)')", "the job list")
        assert browser.evaluate("document.querySelectorAll('#jobs tr').length") == 0
        shot("empty")

        browser.evaluate("document.querySelector('#start-demo button').click()")
        job_id = browser.wait_for("document.querySelector('#jobs tr[data-job-id]')?.dataset.jobId",
                                  "the started demo job")
        shot("started")

        # Its progress advances: a fraction, then a larger one, each with its step's message.
        first = browser.wait_for(row(job_id, "parseFloat(tr.dataset.fraction) >= 0.1 && tr.dataset.fraction"),
                                 "the demo job's progress", timeout=60)
        later = browser.wait_for(row(job_id, f"parseFloat(tr.dataset.fraction) > {first} && tr.dataset.fraction"),
                                 "the demo job's progress advance")
        message = browser.evaluate(row(job_id, "tr.querySelector('.message').textContent"))
        assert message == f"step {round(float(later) * 10) + 1} of 10"
        assert browser.evaluate(row(job_id, "tr.querySelector('progress').value")) == pytest.approx(float(later))
        assert browser.evaluate(row(job_id, "tr.dataset.state")) == "pending"
        assert browser.evaluate(row(job_id, "tr.querySelector('.provider').textContent")) != "–"
        shot("progress")

        browser.evaluate(row(job_id, "tr.querySelector('button.cancel').click() || true"))
        browser.wait_for(row(job_id, "tr.dataset.state === 'cancelled'"), "the demo job cancelled", timeout=90)
        assert float(browser.evaluate(row(job_id, "tr.dataset.fraction"))) < 1.0  # it stopped midway
        assert browser.evaluate(row(job_id, "tr.querySelector('button.cancel').hidden")) is True
        assert "cancel" in browser.evaluate(row(job_id, "tr.querySelector('.outcome').textContent")).lower()
        shot("cancelled")

        # A job's output is shown as text, never as HTML.
        markup = '<b id="injected">bold</b><img src=x onerror="document.title=1">'
        browser.evaluate(f"document.querySelector('#start-command input[name=cmd]').value = "
                         f"{json.dumps('printf %s ' + shlex.quote(markup))}; "
                         f"document.querySelector('#start-command button').click()")
        html_job = browser.wait_for(
            f"[...document.querySelectorAll('#jobs tr[data-job-id]')].map(tr => tr.dataset.jobId)"
            f".find(id => id !== {json.dumps(job_id)})", "the command job")
        browser.wait_for(row(html_job, "tr.dataset.state === 'done'"), "the command job done", timeout=60)
        assert browser.evaluate(row(html_job, "tr.querySelector('.outcome').textContent")) == markup
        assert browser.evaluate("document.getElementById('injected') === null && "
                                "document.querySelectorAll('#jobs img').length === 0")
        assert browser.evaluate("document.title") == "golem_sync jobs"
        # Estimate and accepted side by side: the worker that ran the demo job reports them (the
        # store has no costs), the page keeps the last it saw; the provider's invoice is accepted.
        cost = browser.wait_for(row(job_id, "/^0\\.\\d*[1-9]\\d* \\/ 0\\.\\d*[1-9]/.test("
                                            "tr.querySelector('.cost').textContent) && "
                                            "tr.querySelector('.cost').textContent"),
                                "the demo job's estimated and accepted cost", timeout=60)
        estimated, accepted = (float(v) for v in cost.split(" / "))
        assert accepted == pytest.approx(estimated, rel=0.5)
        shot("escaped")
    except BaseException:
        try:
            shot("failure")
        except Exception:
            pass
        print(f"screenshots: {shots}; logs: {tmp_path / 'gunicorn.log'}, {tmp_path / 'chromium.log'}")
        raise
    finally:
        returncode = server.stop()

    assert returncode == 0
    with open_store(spec) as store:
        records = {r.job_id: r for r in store.list_jobs()}
    assert records[job_id].state == "cancelled" and records[html_job].state == "done"
    probe = YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)
    agreements = [r.agreement_id for r in records.values()]
    probe.assert_clean(agreements, [r.activity_id for r in records.values()], None, invoiced=agreements)
    for allocation_id in {r.allocation_id for r in records.values()}:
        assert not probe.allocation_exists(allocation_id), allocation_id

