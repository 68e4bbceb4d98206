"""doctor against the real yagna on the devnet: a healthy devnet passes every line; each broken
setup fails at its own line with a hint naming the fix; the CLI's exit status and --json.

The devnet stands in for hoodi (platform erc20-hoodi-tglm) and mints 1000 tGLM to the requestor.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest

from golem_sync.doctor import CHECKS, Status, run_doctor

from hygiene import YagnaProbe

pytestmark = pytest.mark.devnet

REPO_ROOT = Path(__file__).resolve().parents[2]
SCAN_SEC = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _allocation_ids(probe: YagnaProbe) -> Set[str]:
    response = probe.get("/payment-api/v1/allocations")
    response.raise_for_status()
    return {a["allocationId"] for a in response.json()}


@pytest.fixture
def devnet_env(golem_devnet: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, str]]:
    """The devnet's variables in this process; on teardown: the doctor left no allocation behind."""
    env = golem_devnet.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYMENT_NETWORK", raising=False)
    probe = YagnaProbe(golem_devnet.api_url, golem_devnet.app_key)
    before = _allocation_ids(probe)
    yield env
    assert _allocation_ids(probe) <= before, "the doctor left an allocation in yagna"


def _cli(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env)
    full["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    # subprocess.run kills the doctor (by pid) if it overruns.
    return subprocess.run([sys.executable, "-m", "golem_sync", "doctor", "--scan-sec", str(SCAN_SEC), *args],
                          env=full, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=120)


def _lines(done: subprocess.CompletedProcess) -> List[str]:
    return done.stdout.strip().splitlines()


def test_healthy_devnet_passes_every_line_and_exits_0(devnet_env: Dict[str, str], golem_devnet: Any) -> None:
    done = _cli(devnet_env)
    lines = _lines(done)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in lines[:len(CHECKS)]] == ["ok"] * len(CHECKS), done.stdout
    assert lines[-1] == "all checks passed"
    text = done.stdout
    assert f"yagna answers at {golem_devnet.api_url}" in text and "yagna 0.17.6" in text
    assert golem_devnet.requestor_id in text and "erc20-hoodi-tglm" in text
    assert "1 tGLM can be reserved" in text
    providers = len(golem_devnet.providers)
    assert f"from {providers} providers in {SCAN_SEC} s, {providers} acceptable" in text
    assert golem_devnet.app_key not in text + done.stderr


def test_json_output_parses(devnet_env: Dict[str, str]) -> None:
    done = _cli(devnet_env, "--json")
    document = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert document["ok"] is True
    assert [(c["name"], c["status"]) for c in document["checks"]] == [(name, "ok") for name in CHECKS]


def test_yagna_down_fails_at_reachable(devnet_env: Dict[str, str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    done = _cli(devnet_env, "--yagna-url", url)
    lines = _lines(done)
    assert done.returncode == 1
    assert lines[0].startswith("FAIL  yagna reachable: nothing answers at " + url)
    assert "fix: start yagna (`yagna service run`)" in lines[0]
    assert all(line.startswith("skip") for line in lines[1:]), done.stdout


def test_wrong_app_key_fails_at_the_app_key(devnet_env: Dict[str, str]) -> None:
    report = run_doctor({"app_key": "not-the-key"}, scan_sec=SCAN_SEC)
    assert report.first_failure is not None and report.first_failure.name == "app key"
    assert "401" in report.first_failure.detail
    assert "yagna app-key create requestor" in (report.first_failure.hint or "")
    assert [c.status for c in report.checks[:2]] == [Status.OK, Status.OK]
    assert {c.status for c in report.checks[3:]} == {Status.SKIP}
    assert "not-the-key" not in report.format()


def test_a_platform_without_an_account_fails_at_the_account(devnet_env: Dict[str, str]) -> None:
    report = run_doctor(payment={"network": "polygon"}, scan_sec=SCAN_SEC)
    check = report.first_failure
    assert check is not None and check.name == "payment account", report.format()
    assert "erc20-polygon-glm" in check.detail
    assert "--network" in (check.hint or "")
    assert report["allocation"].status is Status.SKIP


def test_a_budget_over_the_funds_fails_at_the_allocation(devnet_env: Dict[str, str]) -> None:
    report = run_doctor(payment={"budget": 10 ** 6}, scan_sec=SCAN_SEC)
    check = report.first_failure
    assert check is not None and check.name == "allocation", report.format()
    # The devnet mints 1000 tGLM; earlier tests of the session may have paid a little of it.
    found = re.search(r"available ([0-9.]+) tGLM", check.detail)
    assert "1000000 tGLM" in check.detail and found, check.detail
    assert 990 < Decimal(found.group(1)) <= 1000
    hint = check.hint or ""
    assert "--budget" in hint and f"at most {found.group(1)}" in hint
    assert "yagna payment fund --network hoodi" in hint


def test_every_provider_over_the_price_cap_fails_at_the_market(devnet_env: Dict[str, str],
                                                               golem_devnet: Any) -> None:
    # The devnet's providers ask 0.0001 per cpu-second.
    done = _cli(devnet_env, "--max-cpu-per-sec", "0.0000001")
    lines = _lines(done)
    assert done.returncode == 1, done.stdout + done.stderr
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * (len(CHECKS) - 1), done.stdout
    market = lines[-1]
    assert market.startswith("FAIL  market: "), done.stdout
    assert "0 acceptable" in market and "max_cpu_per_sec" in market
    assert "fix: no offer fits this configuration: relax market.max_cpu_per_sec (--max-cpu-per-sec)" in market
