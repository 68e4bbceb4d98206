"""doctor: each check against a mocked yagna, the fix hints, the skips, the market summary, the CLI.

The same checks against the real yagna on the devnet are in tests/devnet/test_doctor.py.
"""
from __future__ import annotations

import json
import re
import socket
from collections import Counter
from typing import Any, List

import attrs
import pytest
import responses

from golem_sync import GolemConfigError, GolemMarketError
from golem_sync.__main__ import main as cli_main
from golem_sync.doctor import CHECKS, Status, run_doctor, summarize_scan

API = "http://127.0.0.1:7465"
KEY = "sk-TEST-4f1c2e9a8b7d6c5e"
ME = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
PLATFORM = "erc20-hoodi-tglm"
VERSION = {"current": {"version": "0.17.6", "name": "v0.17.6", "seen": True, "releaseTs": "2025-01-01T00:00:00",
                       "insertionTs": "2025-01-01T00:00:00", "updateTs": "2025-01-01T00:00:00"}, "pending": None}
ACCOUNT = {"platform": PLATFORM, "address": ME, "driver": "erc20", "network": "hoodi", "token": "tGLM",
           "send": True, "receive": False}


@attrs.frozen
class FakeOffer:
    provider_id: str
    provider_name: str
    reasons: List[str] = attrs.field(factory=list)
    runtime: str = "vm"
    platforms: tuple = (PLATFORM,)

    @property
    def acceptable(self) -> bool:
        return not self.reasons


@attrs.frozen
class FakeScan:
    """The MarketScan contract: offers, acceptable, rejection_counts()."""

    offers: List[FakeOffer]

    @property
    def acceptable(self) -> List[FakeOffer]:
        return [o for o in self.offers if o.acceptable]

    def rejection_counts(self) -> "Counter[str]":
        return Counter(r for o in self.offers for r in o.reasons)


HEALTHY_SCAN = FakeScan([
    FakeOffer("0xp1", "prov-1"),
    FakeOffer("0xp2", "prov-2", ["cpu price 0.001/s above max_cpu_per_sec 0.0001"]),
])


class Scanner:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: List[dict] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@pytest.fixture
def yagna(monkeypatch):
    for var in ("YAGNA_APPKEY", "YAGNA_API_URL", "YAGNA_PAYMENT_NETWORK", "PAYMENT_NETWORK", "YAGNA_SUBNET"):
        monkeypatch.delenv(var, raising=False)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def healthy(rsps, *, version=VERSION, accounts=(ACCOUNT,), status=(), allocation_status=201,
            allocation_body=None, release_status=200):
    rsps.get(f"{API}/version/get", json=version)
    rsps.get(f"{API}/me", json={"identity": ME, "name": "default", "role": "manager"})
    rsps.get(f"{API}/payment-api/v1/payments/status", json=list(status))
    rsps.get(f"{API}/payment-api/v1/requestorAccounts", json=list(accounts))
    body = allocation_body or {"allocationId": "al-1", "address": ME, "paymentPlatform": PLATFORM,
                               "totalAmount": "1", "spentAmount": "0", "remainingAmount": "1",
                               "timestamp": "2025-01-01T00:00:00Z", "makeDeposit": False}
    rsps.post(f"{API}/payment-api/v1/allocations", json=body, status=allocation_status)
    rsps.delete(f"{API}/payment-api/v1/allocations/al-1", status=release_status)


def doctor(scan=HEALTHY_SCAN, **kwargs):
    kwargs.setdefault("yagna", {"api_url": API, "app_key": KEY})
    scanner = kwargs.pop("scanner", None) or Scanner(scan)
    return run_doctor(scanner=scanner, scan_sec=kwargs.pop("scan_sec", 2), **kwargs)


def statuses(report):
    return {c.name: c.status.value for c in report.checks}


def test_a_healthy_setup_passes_every_check_in_order(yagna):
    healthy(yagna)
    seen = []
    scanner = Scanner(HEALTHY_SCAN)
    report = doctor(scanner=scanner, on_check=seen.append, payment={"budget": 2.5},
                    market={"max_cpu_per_sec": 0.0001})
    assert [c.name for c in report.checks] == list(CHECKS) == [c.name for c in seen]
    assert report.ok and report.exit_code == 0, report.format()
    assert "0.17.6" in report["yagna version"].detail
    assert ME in report["requestor identity"].detail
    assert "pays on erc20-hoodi-tglm" in report["payment account"].detail
    assert "2.5 tGLM" in report["allocation"].detail
    sent = json.loads(yagna.calls[4].request.body)
    assert sent["totalAmount"] == "2.5" and sent["paymentPlatform"] == PLATFORM and sent["address"] == ME
    assert "timeout" in sent  # a lost answer's allocation expires by itself
    assert yagna.calls[5].request.method == "DELETE"  # released at once
    assert "2 offers from 2 providers in 2 s, 1 acceptable" in report["market"].detail
    assert "1× cpu price 0.001/s above max_cpu_per_sec 0.0001" in report["market"].detail
    assert scanner.calls[0]["timeout"] == 2 and scanner.calls[0]["market"].max_cpu_per_sec == 0.0001
    assert scanner.calls[0]["package"].image_tag == "golem/alpine:latest"
    status_query = yagna.calls[2].request.url
    assert "network=hoodi" in status_query and "driver=erc20" in status_query


def test_json_document_lists_every_check(yagna):
    healthy(yagna)
    document = json.loads(json.dumps(doctor().to_json()))
    assert document["ok"] is True
    assert [c["name"] for c in document["checks"]] == list(CHECKS)
    assert set(document["checks"][0]) == {"name", "status", "detail", "hint"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_yagna_down_fails_at_reachable_and_skips_the_rest(monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    url = f"http://127.0.0.1:{_free_port()}"
    report = run_doctor({"api_url": url, "app_key": KEY}, scanner=Scanner(HEALTHY_SCAN))
    first = report.first_failure
    assert first is not None and first.name == "yagna reachable"
    assert url in first.detail and "yagna service run" in first.hint and "YAGNA_API_URL" in first.hint
    assert [c.status for c in report.checks[1:]] == [Status.SKIP] * (len(CHECKS) - 1)
    assert report.exit_code == 1


def test_something_that_is_not_yagna_fails_at_reachable(yagna):
    yagna.get(f"{API}/version/get", status=404, body="no such page")
    report = doctor()
    assert report.first_failure.name == "yagna reachable"
    assert "not as yagna does" in report.first_failure.detail and "REST root" in report.first_failure.hint


def test_an_old_yagna_fails_at_the_version_and_skips_the_market(yagna):
    old = {**VERSION, "current": {**VERSION["current"], "version": "0.12.3"}}
    healthy(yagna, version=old)
    report = doctor()
    assert statuses(report)["yagna version"] == "FAIL"
    assert "0.12.3" in report["yagna version"].detail and "pip install -U golem-node" in report["yagna version"].hint
    assert statuses(report)["allocation"] == "ok" and statuses(report)["market"] == "skip"


def test_a_newer_yagna_is_accepted_with_a_note(yagna):
    healthy(yagna, version={**VERSION, "current": {**VERSION["current"], "version": "0.18.1"}})
    check = doctor()["yagna version"]
    assert check.ok and "newer than 0.17.6" in check.detail


def test_a_missing_app_key_fails_at_the_app_key(yagna):
    healthy(yagna)
    report = doctor(yagna={"api_url": API})
    assert report.first_failure.name == "app key"
    assert report.first_failure.detail == "no app key given"
    assert "yagna app-key create requestor" in report.first_failure.hint
    assert not [c for c in yagna.calls if c.request.url.endswith("/me")]  # nothing sent with a made-up key


def test_a_rejected_app_key_fails_at_the_app_key_and_is_never_shown(yagna):
    yagna.get(f"{API}/version/get", json=VERSION)
    yagna.get(f"{API}/me", status=401, body="Invalid application key")
    report = doctor()
    assert statuses(report) == {"yagna reachable": "ok", "yagna version": "ok", "app key": "FAIL",
                                **{name: "skip" for name in CHECKS[3:]}}
    assert "401" in report["app key"].detail and "yagna app-key list" in report["app key"].hint
    assert KEY not in report.format() and KEY not in json.dumps(report.to_json())


def test_the_app_key_comes_from_the_environment(yagna, monkeypatch):
    healthy(yagna)
    monkeypatch.setenv("YAGNA_APPKEY", KEY)
    monkeypatch.setenv("YAGNA_API_URL", API)
    assert doctor(yagna=None).ok
    assert yagna.calls[1].request.headers["Authorization"] == f"Bearer {KEY}"


def test_a_network_the_driver_does_not_serve_fails_at_the_account(yagna):
    yagna.get(f"{API}/version/get", json=VERSION)
    yagna.get(f"{API}/me", json={"identity": ME, "name": "default", "role": "manager"})
    yagna.get(f"{API}/payment-api/v1/payments/status", status=404,
              json={"message": "Requested network not supported polygon"})
    report = doctor(payment={"network": "polygon"})
    check = report.first_failure
    assert check.name == "payment account"
    assert "erc20-polygon-glm" in check.detail and "not supported polygon" in check.detail
    assert "--network" in check.hint and "[chain.polygon]" in check.hint
    assert statuses(report)["payment driver"] == statuses(report)["allocation"] == "skip"
    assert statuses(report)["market"] == "ok"  # the market does not need the payment side


def test_an_account_set_up_to_receive_only_fails_with_init_sender(yagna):
    healthy(yagna, accounts=[{**ACCOUNT, "send": False, "receive": True}])
    check = doctor().first_failure
    assert check.name == "payment account"
    assert "yagna payment init --sender --network hoodi" in check.hint


def test_an_uninitialised_account_on_a_served_network_is_ok(yagna):
    other = {**ACCOUNT, "platform": "erc20-holesky-tglm", "network": "holesky"}
    healthy(yagna, accounts=[other])
    check = doctor()["payment account"]
    assert check.ok and "not initialised" in check.detail and "erc20-holesky-tglm" in check.detail


@pytest.mark.parametrize("problem, detail, hint", [
    ({"kind": "InsufficientGas", "driver": "erc20", "network": "hoodi", "address": ME, "neededGasEst": "0.01"},
     "not enough gas (about 0.01 needed)", "yagna payment fund --network hoodi"),
    ({"kind": "InsufficientToken", "driver": "erc20", "network": "hoodi", "address": ME, "neededTokenEst": "5"},
     "not enough tokens (about 5 needed)", "yagna payment fund --network hoodi"),
    ({"kind": "CantSign", "driver": "erc20", "network": "polygon", "address": ME},
     "cannot sign", "yagna id unlock"),
    ({"kind": "RpcError", "driver": "erc20", "network": "hoodi"}, "every RPC endpoint fails", "rpc-endpoints"),
    ({"kind": "TxStuck", "driver": "erc20", "network": "hoodi"}, "stuck", "max-fee-per-gas"),
])
def test_driver_problems_fail_at_the_driver_with_their_fix(yagna, problem, detail, hint):
    healthy(yagna, status=[problem])
    report = doctor()
    check = report.first_failure
    assert check.name == "payment driver"
    assert detail in check.detail and problem["kind"] in check.detail
    assert hint in check.hint
    assert statuses(report)["allocation"] == "ok"  # a driver problem does not stop the allocation check


def test_problems_on_other_networks_are_not_ours(yagna):
    healthy(yagna, status=[{"kind": "InsufficientGas", "driver": "erc20", "network": "polygon", "address": ME}])
    assert doctor()["payment driver"].ok


def test_mainnet_gas_hint_names_the_native_currency(yagna):
    healthy(yagna, accounts=[{**ACCOUNT, "platform": "erc20-polygon-glm", "network": "polygon", "token": "GLM"}],
            status=[{"kind": "InsufficientGas", "driver": "erc20", "network": "polygon", "address": ME}])
    check = doctor(payment={"network": "polygon"})["payment driver"]
    assert "send GLM, and POL for gas" in check.hint and ME in check.hint


INSUFFICIENT = {
    "type": "/payment-api/v1/allocations/validation-error",
    "detail": "Insufficient funds to create the allocation. Top up your account or release all existing "
              "allocations to unlock the funds via `yagna payment release-allocations`",
    "address": ME, "availableFunds": "1000", "paymentPlatform": PLATFORM, "requestedFunds": "1000000",
    "reservedFunds": "0",
}


def test_a_budget_over_the_funds_fails_at_the_allocation_naming_both_fixes(yagna):
    healthy(yagna, allocation_status=400, allocation_body=INSUFFICIENT)
    report = doctor(payment={"budget": 10 ** 6})
    check = report.first_failure
    assert check.name == "allocation"
    assert "1000000 tGLM" in check.detail and "available 1000 tGLM" in check.detail
    assert "--budget" in check.hint and "at most 1000" in check.hint
    assert "yagna payment fund --network hoodi" in check.hint
    assert "release-allocations" not in check.hint  # nothing else holds funds
    assert statuses(report)["market"] == "ok"


def test_funds_held_by_other_allocations_are_named(yagna):
    healthy(yagna, allocation_status=400, allocation_body={**INSUFFICIENT, "availableFunds": "0",
                                                           "reservedFunds": "999"})
    check = doctor(payment={"budget": 5})["allocation"]
    assert "999 tGLM reserved by other allocations" in check.detail
    assert "yagna payment release-allocations" in check.hint


def test_an_allocation_that_cannot_be_released_says_how_to_release_it(yagna):
    healthy(yagna, release_status=500)
    check = doctor()["allocation"]
    assert check.status is Status.FAIL and "yagna payment release-allocations" in check.hint
    assert "expires by itself" in check.detail


# -- the market line -----------------------------------------------------------------------------


def test_no_offers_fails_naming_the_subnet():
    status, detail, hint = summarize_scan(FakeScan([]), scan_sec=5, subnet="devnet")
    assert status is Status.FAIL
    assert "no offers in 5 s on subnet 'devnet'" == detail
    assert "--subnet" in hint and "'public'" in hint and "--scan-sec" in hint


def test_every_offer_over_the_price_cap_fails_naming_the_option():
    scan = FakeScan([FakeOffer(f"0xp{i}", f"p{i}", [f"cpu price 0.00{i}/s above max_cpu_per_sec 0.0000001"])
                     for i in range(1, 4)])
    status, detail, hint = summarize_scan(scan, scan_sec=3, subnet="public")
    assert status is Status.FAIL
    assert detail.startswith("3 offers from 3 providers in 3 s, 0 acceptable; rejected: 1× cpu price")
    assert "market.max_cpu_per_sec (--max-cpu-per-sec)" in hint


def test_reasons_name_their_options_and_the_platform():
    scan = FakeScan([
        FakeOffer("0xa", "a", ["start price 1 above max_start_price 0.1", "env price 0.1/s above max_env_per_sec 0"]),
        FakeOffer("0xb", "b", ["denied by name: denied_provider_names"]),
        FakeOffer("0xc", "c", ["pays only on erc20-polygon-glm (this job pays on erc20-hoodi-tglm)"]),
        FakeOffer("0xd", "d", ["rejected by proposal_filter"]),
    ])
    status, _, hint = summarize_scan(scan, scan_sec=1, subnet="public")
    assert status is Status.FAIL
    for named in ("market.max_start_price (--max-start-price)", "market.max_env_per_sec (--max-env-per-sec)",
                  "market.denied_provider_names", "payment.network (--network)", "market.proposal_filter"):
        assert named in hint


def test_many_reasons_are_cut_to_the_commonest():
    scan = FakeScan([FakeOffer(f"0x{i}", f"p{i}", [f"reason {i % 7}"]) for i in range(14)] + [FakeOffer("0xok", "ok")])
    status, detail, hint = summarize_scan(scan, scan_sec=1, subnet="public")
    assert status is Status.OK and hint is None
    assert "15 offers from 15 providers" in detail and "and 2 more reasons" in detail


def test_a_scan_that_fails_is_reported_not_raised(yagna):
    healthy(yagna)
    report = doctor(scanner=Scanner(GolemMarketError("the market is closed")))
    assert report["market"].status is Status.FAIL and "the market is closed" in report["market"].detail
    healthy(yagna)
    report = doctor(scanner=Scanner(ZeroDivisionError("boom")))
    assert report["market"].status is Status.FAIL and "golem_sync bug" in report["market"].hint


# -- options and the command line ------------------------------------------------------------------


def test_bad_options_raise_before_anything_is_checked(yagna):
    with pytest.raises(GolemConfigError, match="payment.network='hodi'.*did you mean 'hoodi'"):
        run_doctor({"api_url": API, "app_key": KEY}, payment={"network": "hodi"})
    with pytest.raises(GolemConfigError, match="market.max_cpu_per_sec"):
        run_doctor({"api_url": API, "app_key": KEY}, market={"max_cpu_per_sec": -1})
    with pytest.raises(GolemConfigError, match="scan_sec"):
        run_doctor({"api_url": API, "app_key": KEY}, scan_sec=0)
    assert not yagna.calls


def test_cli_prints_one_line_per_check_and_exits_non_zero(capsys, monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    url = f"http://127.0.0.1:{_free_port()}"
    assert cli_main(["doctor", "--yagna-url", url, "--app-key", KEY]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(CHECKS)
    assert re.match(r"FAIL +yagna reachable: nothing answers at http://127\.0\.0\.1:\d+ .*; fix: start yagna", lines[0])
    assert all(line.startswith("skip") for line in lines[1:])
    assert KEY not in "\n".join(lines)


def test_cli_json_parses(capsys, monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    assert cli_main(["doctor", "--json", "--yagna-url", f"http://127.0.0.1:{_free_port()}", "--app-key", KEY]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False and document["checks"][0]["status"] == "FAIL"


def test_cli_bad_option_exits_2_with_the_message(capsys):
    assert cli_main(["doctor", "--network", "ropsten"]) == 2
    assert "payment.network='ropsten'" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli_main(["doctor", "--budget", "lots"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        cli_main([])  # a command is required


def test_a_real_market_scan_is_summed_up_by_group_and_its_rules_name_the_fix():
    from golem_sync import MarketScan, ScannedOffer
    from golem_sync._market.proposals import Reason

    def offer(pid, *reasons):
        return ScannedOffer(offer_id=f"o-{pid}", provider_id=pid, provider_name=pid, runtime="vm", cpu_threads=2,
                            mem_gib=4.0, storage_gib=20.0, prices={}, platforms=(PLATFORM,),
                            reasons=list(reasons), properties={}, proposal=None)

    def cpu(price):
        return Reason(f"cpu price {price}/s above max_cpu_per_sec 0.00001", rule="max_cpu_per_sec",
                      group="above max_cpu_per_sec=0.00001")

    scan = MarketScan(offers=[
        offer("0xa", cpu("0.001")), offer("0xb", cpu("0.002")),
        offer("0xc", Reason("constraint not met: (golem.inf.mem.gib>=64)", rule="constraints",
                            group="not meeting (golem.inf.mem.gib>=64)")),
        offer("0xd", Reason("no common payment platform: offers erc20-polygon-glm, this job pays on " + PLATFORM,
                            rule="payment.network", group=f"only on erc20-polygon-glm (this job pays on {PLATFORM})")),
    ], duration_sec=3.0, method="scan", platform=PLATFORM, subnet="public")
    status, detail, hint = summarize_scan(scan, scan_sec=3, subnet="public")
    assert status is Status.FAIL
    assert "4 offers from 4 providers in 3 s, 0 acceptable; rejected: 2× above max_cpu_per_sec=0.00001, " in detail
    assert hint.index("market.max_cpu_per_sec (--max-cpu-per-sec)") < hint.index("package.min_mem_gib")
    assert "payment.network (--network)" in hint
