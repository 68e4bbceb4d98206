"""``python -m golem_sync doctor``: check, in order, what a first run on the Golem Network needs.

Each check gives one line: ``ok``, ``FAIL`` with a hint naming the fix, or ``skip`` when a check
it builds on failed. In order: yagna reachable · its version · the app key · the requestor
identity · a payment account on the chosen platform · the payment driver's status there · an
allocation of the budget (made and released at once) · the market: how many offers arrive in a
few seconds for the package and market options, and how many this configuration would accept::

    report = run_doctor(payment={"network": "hoodi", "budget": 5}, market={"max_cpu_per_sec": 0.001})
    print(report.format())          # or report.to_json()
    sys.exit(report.exit_code)

Threads: :func:`run_doctor` runs every check on the caller's thread; only the market line borrows
a :class:`~golem_sync.GolemNetwork` (its own threads) for the scan, and closes it before returning.
The app key is never printed: not in a detail, a hint or a log line.
"""
from __future__ import annotations

import argparse
import datetime as dt
import enum
import json
import logging
import os
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from .errors import (GolemConfigError, GolemError, YagnaAuthError, YagnaError, YagnaNotFoundError,
                     YagnaRequestError, YagnaTimeoutError, YagnaUnreachableError)
from ._options import MarketOptions, PackageOptions, PaymentOptions, parse_section
from .yagna.client import YagnaClient
from .yagna.config import YagnaConfig
from .yagna.models import Identity

if TYPE_CHECKING:
    from ._market.scan import MarketScan

__all__ = ["Status", "Check", "DoctorReport", "run_doctor", "summarize_scan", "CHECKS", "TESTED_YAGNA_VERSION",
           "add_parser", "main"]

logger = logging.getLogger("golem_sync.doctor")

#: The checks, in the order they run.
CHECKS: Tuple[str, ...] = ("yagna reachable", "yagna version", "app key", "requestor identity",
                           "payment account", "payment driver", "allocation", "market")
#: What each check builds on: when one of those did not pass, the check is skipped.
_NEEDS: Mapping[str, Tuple[str, ...]] = {
    "yagna reachable": (),
    "yagna version": ("yagna reachable",),
    "app key": ("yagna reachable",),
    "requestor identity": ("app key",),
    "payment account": ("requestor identity",),
    "payment driver": ("payment account",),
    "allocation": ("payment account",),
    "market": ("yagna version", "requestor identity"),
}
#: The yagna the devnet tests run (newer versions are accepted, with a note).
TESTED_YAGNA_VERSION = (0, 17, 6)
#: How long the allocation check's allocation lives if releasing it fails (or its answer is lost).
_ALLOCATION_TTL_SEC = 300
DEFAULT_IMAGE_TAG = "golem/alpine:latest"
DEFAULT_SCAN_SEC = 10.0

#: ``scanner(package=..., market=..., timeout=...) -> MarketScan`` (``GolemNetwork.scan_market``).
MarketScanner = Callable[..., "MarketScan"]


class Status(str, enum.Enum):
    """How one check ended."""

    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"  # a check it builds on did not pass


@attrs.frozen
class Check:
    """One line of the report: ``name``, ``status``, what was found and, on failure, the fix."""

    name: str
    status: Status
    detail: str
    hint: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def line(self) -> str:
        """``ok    yagna reachable: ...`` (a FAIL line ends with ``fix: ...``)."""
        text = f"{self.status.value:<5} {self.name}: {self.detail}"
        return f"{text}; fix: {self.hint}" if self.hint else text

    def to_json(self) -> Dict[str, Optional[str]]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail, "hint": self.hint}


@attrs.frozen
class DoctorReport:
    """Every check, in order. ``ok`` only if all passed; ``exit_code`` is 0 then, else 1."""

    checks: Tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def first_failure(self) -> Optional[Check]:
        return next((c for c in self.checks if c.status is Status.FAIL), None)

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def format(self) -> str:
        return "\n".join(c.line() for c in self.checks)

    def to_json(self) -> Dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}


class _Failed(Exception):
    """A check failed: ``detail`` says what was found, ``hint`` names the fix."""

    def __init__(self, detail: str, hint: Optional[str]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


def run_doctor(
    yagna: Union[YagnaConfig, Mapping[str, Any], None] = None,
    *,
    payment: Any = None,
    package: Any = None,
    market: Any = None,
    scan_sec: float = DEFAULT_SCAN_SEC,
    on_check: Optional[Callable[[Check], None]] = None,
    scanner: Optional[MarketScanner] = None,
) -> DoctorReport:
    """Run every check in order and return the report.

    Args:
        yagna: a :class:`YagnaConfig`, a dict of its fields, or ``None`` for the environment
            (``YAGNA_APPKEY``, ``YAGNA_API_URL``), as :class:`~golem_sync.GolemNetwork` takes it.
        payment: payment options (``network``, ``driver``, ``token``, ``budget``) as for the network.
        package, market: what the market line scans for (default image ``golem/alpine:latest``).
        scan_sec: how long the market line collects offers.
        on_check: called with each check as soon as it is done (e.g. to print it).
        scanner: instead of ``GolemNetwork.scan_market`` (for tests).

    Raises :class:`GolemConfigError` for invalid options, before anything is checked.
    """
    payment_options = parse_section(PaymentOptions, payment)
    payment_options.platform()  # an unknown network, from the environment too, is a config error
    package_options = parse_section(PackageOptions, package if package is not None
                                    else {"image_tag": DEFAULT_IMAGE_TAG})
    market_options = parse_section(MarketOptions, market)
    if isinstance(scan_sec, bool) or not isinstance(scan_sec, (int, float)) or scan_sec <= 0:
        raise GolemConfigError(f"scan_sec must be a positive number of seconds, got {scan_sec!r}")
    config, has_key = _yagna_config(yagna)
    doctor = _Doctor(config, has_key, payment_options, package_options, market_options, float(scan_sec),
                     scanner)
    try:
        return doctor.run(on_check)
    finally:
        doctor.close()


def _yagna_config(yagna: Union[YagnaConfig, Mapping[str, Any], None]) -> Tuple[YagnaConfig, bool]:
    """The config to use and whether it holds an app key (without one, the key check fails)."""
    if yagna is not None and not isinstance(yagna, (YagnaConfig, Mapping)):
        raise GolemConfigError(f"yagna must be a YagnaConfig, a dict of its fields or None, got {type(yagna).__name__}")
    if isinstance(yagna, YagnaConfig):
        return yagna, True
    values = {k: v for k, v in dict(yagna or {}).items() if v is not None}
    has_key = bool(str(values.get("app_key") or os.environ.get("YAGNA_APPKEY") or "").strip())
    if not has_key:
        values["app_key"] = "no-app-key"  # only for the calls that need none (version)
    # One retry: a doctor should say "not reachable" in seconds, not after a long backoff.
    values.setdefault("retries", 1)
    return YagnaConfig.from_env(**values), has_key


class _Doctor:
    """The checks of one run and what they learn for the next ones (version, identity)."""

    def __init__(self, config: YagnaConfig, has_key: bool, payment: PaymentOptions, package: PackageOptions,
                 market: MarketOptions, scan_sec: float, scanner: Optional[MarketScanner]) -> None:
        self.config = config
        self.has_key = has_key
        self.payment = payment
        self.package = package
        self.market = market
        self.scan_sec = scan_sec
        self.scanner = scanner
        self.client = YagnaClient(config)
        self.network = payment.resolved_network()
        self.platform = payment.platform()
        self.version: Optional[str] = None
        self.identity: Optional[str] = None
        self._me: Optional[Identity] = None
        self.driver_problems: List[Any] = []
        self.results: Dict[str, Check] = {}

    def close(self) -> None:
        self.client.close()

    def run(self, on_check: Optional[Callable[[Check], None]]) -> DoctorReport:
        steps: Sequence[Tuple[str, Callable[[], str]]] = [
            ("yagna reachable", self.reachable), ("yagna version", self.check_version),
            ("app key", self.app_key), ("requestor identity", self.requestor_identity),
            ("payment account", self.account), ("payment driver", self.driver),
            ("allocation", self.allocation), ("market", self.scan),
        ]
        for name, step in steps:
            check = self._one(name, step)
            self.results[name] = check
            logger.info("doctor: %s", check.line())
            if on_check is not None:
                on_check(check)
        return DoctorReport(tuple(self.results[name] for name in CHECKS))

    def _one(self, name: str, step: Callable[[], str]) -> Check:
        failed = [n for n in _NEEDS[name] if not self.results[n].ok]
        if failed:
            return Check(name, Status.SKIP, f"needs {failed[0]}")
        try:
            return Check(name, Status.OK, step())
        except _Failed as exc:
            return Check(name, Status.FAIL, exc.detail, exc.hint)
        except GolemError as exc:
            return Check(name, Status.FAIL, str(exc), "see the error above")
        except Exception as exc:  # a doctor reports, it does not crash with a traceback
            logger.debug("doctor: %s raised", name, exc_info=True)
            return Check(name, Status.FAIL, f"unexpected {type(exc).__name__}: {exc}",
                         "this is a golem_sync bug: please report it with this output")

    # -- the checks, in order -----------------------------------------------------------------

    def reachable(self) -> str:
        url = self.config.api_url
        try:
            self.version = self.client.version.get().current.version
        except YagnaUnreachableError as exc:
            raise _Failed(f"nothing answers at {url} ({_reason(exc)})",
                          "start yagna (`yagna service run`), or point --yagna-url / YAGNA_API_URL at it") from None
        except YagnaTimeoutError:
            raise _Failed(f"{url} accepted the connection but did not answer in "
                          f"{self.config.request_timeout:g} s",
                          "check that yagna at that address is not stuck (restart `yagna service run`)") from None
        except YagnaError as exc:
            raise _Failed(f"{url} answers, but not as yagna does ({exc})",
                          "--yagna-url / YAGNA_API_URL must be yagna's REST root, e.g. http://127.0.0.1:7465") \
                from None
        return f"yagna answers at {url}"

    def check_version(self) -> str:
        from ._network import MIN_YAGNA_VERSION

        text = self.version or ""
        found = _version_tuple(text)
        minimum, tested = _dotted(MIN_YAGNA_VERSION), _dotted(TESTED_YAGNA_VERSION)
        if found is None:
            raise _Failed(f"yagna reports version {text!r}, which golem_sync cannot read",
                          f"run yagna {tested} (`pip install golem-node=={tested}` ships it)")
        if found < MIN_YAGNA_VERSION:
            raise _Failed(f"yagna {text} is older than {minimum}, the oldest golem_sync supports",
                          f"upgrade yagna to {tested} or newer (`pip install -U golem-node`)")
        if found[:2] > TESTED_YAGNA_VERSION[:2]:
            return f"yagna {text} (supported: {minimum} or newer; newer than {tested}, the newest tested)"
        return f"yagna {text} (supported: {minimum} or newer; tested with {tested})"

    def app_key(self) -> str:
        create = ("create one with `yagna app-key create requestor` and set YAGNA_APPKEY "
                  "(or pass --app-key)")
        if not self.has_key:
            raise _Failed("no app key given", create)
        try:
            me = self.client.identity.me()
        except YagnaAuthError as exc:
            raise _Failed(f"yagna rejected the app key ({exc.status} on GET /me)",
                          f"`yagna app-key list` shows the valid keys; {create}") from None
        self.identity = me.identity
        self._me = me
        return f"accepted (role {me.role})"

    def requestor_identity(self) -> str:
        me = self._me
        assert me is not None  # the app key check read it
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", me.identity or ""):
            raise _Failed(f"yagna gave {me.identity!r} as the requestor's node id",
                          "`yagna id show` should name the default identity; recreate the data dir if not")
        return f"{me.identity} ({me.name})"

    def account(self) -> str:
        address = (self.identity or "").lower()
        # The driver status doubles as "does yagna serve this network at all" (404 if not).
        try:
            self.driver_problems = self.client.payment.driver_status(network=self.network,
                                                                     driver=self.payment.driver)
        except YagnaNotFoundError as exc:
            raise _Failed(f"yagna's {self.payment.driver} driver has no {self.network} network, so no account "
                          f"on {self.platform} ({exc.detail or exc})",
                          f"choose a network this yagna pays on (--network / YAGNA_PAYMENT_NETWORK; "
                          f"the testnet is hoodi), or add [chain.{self.network}] to config-payments.toml "
                          f"in yagna's data dir") from None
        accounts = self.client.payment.list_requestor_accounts()
        mine = [a for a in accounts if a.platform.lower() == self.platform.lower() and a.address.lower() == address]
        init = f"`yagna payment init --sender --network {self.network}`"
        if mine and not any(a.send for a in mine):
            raise _Failed(f"{address} on {self.platform} is set up to receive only", f"run {init}")
        if mine:
            return f"{address} pays on {self.platform}"
        others = sorted({a.platform for a in accounts if a.address.lower() == address and a.send})
        elsewhere = f"; it is initialised on {', '.join(others)}" if others else ""
        # yagna 0.17 pays from a served network's account without `payment init` (it forgets
        # initialised accounts at every restart), so this is not a failure.
        return f"{address} on {self.platform} (served by the {self.payment.driver} driver; not initialised{elsewhere})"

    def driver(self) -> str:
        problems = [p for p in self.driver_problems if p.network in (None, self.network) or p.kind == "CantSign"]
        if not problems:
            return f"the {self.payment.driver} driver reports no problem on {self.network}"
        details = [_problem_detail(p) for p in problems]
        hints = []
        for problem in problems:
            hint = self._problem_hint(problem)
            if hint not in hints:
                hints.append(hint)
        raise _Failed("; ".join(details), "; ".join(hints))

    def _problem_hint(self, problem: Any) -> str:
        fund = self._fund_hint()
        return {
            "InsufficientGas": f"the account needs gas for its transactions: {fund}",
            "InsufficientToken": f"pending payments need more {self._token()} than the account holds: {fund}",
            "CantSign": "yagna cannot sign transactions: unlock the identity (`yagna id unlock`)",
            "RpcError": f"every RPC endpoint of {self.network} fails: check the internet connection, or set "
                        f"working rpc-endpoints for [chain.{self.network}] in config-payments.toml",
            "TxStuck": f"a transaction is stuck: raise max-fee-per-gas for [chain.{self.network}] "
                       f"in config-payments.toml",
            "InvalidChainId": "a scheduled payment's chain is no longer configured: restore its "
                              "[chain.…] table in config-payments.toml",
        }.get(problem.kind, f"see `yagna payment status --network {self.network}`")

    def allocation(self) -> str:
        amount = Decimal(str(self.payment.budget))
        token = self._token()
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=_ALLOCATION_TTL_SEC)
        try:
            allocation = self.client.payment.create_allocation(
                amount, payment_platform=self.platform, address=self.identity, timeout=expires)
        except YagnaRequestError as exc:
            raise self._allocation_failed(exc, amount) from None
        except (YagnaTimeoutError, YagnaUnreachableError) as exc:
            raise _Failed(f"yagna did not answer the allocation request ({_reason(exc)}); if it made one, it "
                          f"expires by itself within {_ALLOCATION_TTL_SEC} s",
                          "run doctor again; if it persists, restart yagna") from None
        try:
            self.client.payment.release_allocation(allocation.allocation_id)
        except YagnaError as exc:
            raise _Failed(f"made an allocation of {amount} {token} but could not release it ({exc}); it expires "
                          f"by itself within {_ALLOCATION_TTL_SEC} s",
                          "`yagna payment release-allocations` releases it now") from None
        return f"{_amount(amount)} {token} can be reserved on {self.platform} (made and released)"

    def _allocation_failed(self, exc: YagnaError, amount: Decimal) -> _Failed:
        text = f"{exc.detail or ''} {exc}"
        token = self._token()
        if "insufficient" not in text.lower() and "funds" not in text.lower():
            return _Failed(f"yagna refused an allocation of {_amount(amount)} {token} on {self.platform}: {exc}",
                           f"see `yagna payment status --network {self.network}`")
        available = _field(text, "availableFunds")
        reserved = _field(text, "reservedFunds")
        parts = ([f"available {_amount(available)} {token}"] if available is not None else []) + \
            ([f"{_amount(reserved)} {token} reserved by other allocations"] if reserved else [])
        holds = f" ({', '.join(parts)})" if parts else ""
        lower = (f"lower the budget (--budget / payment.budget) to at most {_amount(available)}"
                 if available is not None and available > 0 else "lower the budget (--budget / payment.budget)")
        hint = f"{lower}, or fund the account: {self._fund_hint()}"
        if reserved:
            hint += "; `yagna payment release-allocations` frees what other allocations hold"
        return _Failed(f"the budget {_amount(amount)} {token} is more than {self.identity} can reserve on "
                       f"{self.platform}{holds}", hint)

    def scan(self) -> str:
        golem = None
        scanner = self.scanner
        try:
            if scanner is None:
                from ._network import GolemNetwork

                golem = GolemNetwork(self.config, payment=self.payment)
                scanner = golem.scan_market
            scan = scanner(package=self.package, market=self.market, timeout=self.scan_sec)
        finally:
            if golem is not None:
                golem.close()
        status, detail, hint = summarize_scan(scan, scan_sec=self.scan_sec, subnet=self.market.resolved_subnet())
        if status is not Status.OK:
            raise _Failed(detail, hint)
        return detail

    # -- helpers --------------------------------------------------------------------------------

    def _token(self) -> str:
        token = self.payment.resolved_token()
        return {"glm": "GLM", "tglm": "tGLM"}.get(token, token.upper())

    def _fund_hint(self) -> str:
        if self.payment.resolved_token() == "tglm":
            return f"`yagna payment fund --network {self.network}` (test GLM and gas for the testnet)"
        gas = {"polygon": "POL", "mainnet": "ETH"}.get(self.network, "the chain's native currency")
        return f"send GLM, and {gas} for gas, to {self.identity} on {self.network}"


# -- the market line ------------------------------------------------------------------------------

#: Options a rejection reason may name, and the doctor flag that sets each.
_FLAGS: Mapping[str, str] = {
    "max_cpu_per_sec": "--max-cpu-per-sec", "max_env_per_sec": "--max-env-per-sec",
    "max_start_price": "--max-start-price", "subnet_tag": "--subnet", "image_tag": "--image-tag",
}


def _option_sections() -> Dict[str, str]:
    names: Dict[str, str] = {}
    for cls in (MarketOptions, PackageOptions, PaymentOptions):
        for field in attrs.fields(cls):
            if "_" in field.name:  # one-word names ("engine", "budget") are too common in prose
                names.setdefault(field.name, f"{cls.section}.{field.name}")
    return names


#: Rules a rejection reason may come from that are not an option's name, and what fixes them.
_RULE_FIXES: Mapping[str, str] = {
    "payment.network": "payment.network (--network)",
    "constraints": "the package's requirements (package.min_mem_gib, min_storage_gib, min_cpu_threads, "
                   "engine, capabilities)",
    "pricing": "nothing (offers without linear pricing cannot be used)",
    "max_retries": "nothing (those providers already failed this job)",
}


def _label(rule: str, sections: Mapping[str, str]) -> Optional[str]:
    if rule in _RULE_FIXES:
        return _RULE_FIXES[rule]
    if rule in sections:
        return sections[rule] + (f" ({_FLAGS[rule]})" if rule in _FLAGS else "")
    return None


def _options_named(reasons: Sequence[str]) -> List[str]:
    """``market.max_cpu_per_sec (--max-cpu-per-sec)``, ... for the options behind the reasons.

    A reason from a scan carries its ``rule`` (the option or check); a plain string is searched
    for option names.
    """
    sections = _option_sections()
    found: List[str] = []
    for reason in reasons:
        rule = getattr(reason, "rule", None)
        words = [rule] if isinstance(rule, str) else re.findall(r"[a-z]+(?:_[a-z]+)+", reason)
        if rule is None and re.search(r"\bplatform|\b\w+-\w+-t?glm\b", reason):
            words.append("payment.network")
        for word in words:
            label = _label(word, sections)
            if label is not None and label not in found:
                found.append(label)
    return found


def summarize_scan(scan: "MarketScan", *, scan_sec: float, subnet: str) -> Tuple[Status, str, Optional[str]]:
    """The market line for a :class:`~golem_sync.MarketScan`: its status, what was seen, and the fix
    if nothing fits.

    ``scan.offers`` is every offer seen, ``scan.acceptable`` the ones this configuration accepts and
    ``scan.rejection_counts()`` counts the others by reason (each reason names the option).
    """
    offers = list(scan.offers)
    acceptable = list(scan.acceptable)
    counts = scan.rejection_counts()
    providers = {getattr(o, "provider_id", None) for o in offers}
    seen = (f"{len(offers)} offer{'s' if len(offers) != 1 else ''} from {len(providers)} "
            f"provider{'s' if len(providers) != 1 else ''} in {scan_sec:g} s, {len(acceptable)} acceptable")
    top = counts.most_common()
    if top:
        shown = ", ".join(f"{n}× {reason}" for reason, n in top[:5])
        more = f", and {len(top) - 5} more reasons" if len(top) > 5 else ""
        seen += f"; rejected: {shown}{more}"
    if acceptable:
        return Status.OK, seen, None
    if not offers:
        return (Status.FAIL, f"no offers in {scan_sec:g} s on subnet {subnet!r}",
                f"check the subnet (--subnet / YAGNA_SUBNET; the real network's providers are on 'public') "
                f"and the package (--image-tag), or scan longer (--scan-sec)")
    reasons: Dict[str, str] = {}  # by group, the most common first: one reason (with its rule) each
    for offer in offers:
        for reason in offer.reasons:
            reasons.setdefault(getattr(reason, "group", reason), reason)
    named = _options_named([reasons.get(group, group) for group, _ in top])
    fix = (f"relax {', '.join(named)}" if named else "relax the options the reasons name")
    return Status.FAIL, seen, f"no offer fits this configuration: {fix}"


# -- small helpers ------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1].split(". Is yagna running")[0] if ": " in text else text


def _version_tuple(text: str) -> Optional[Tuple[int, ...]]:
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if match is None:
        return None
    return tuple(int(g) for g in match.groups(default="0"))


def _dotted(version: Tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _field(text: str, name: str) -> Optional[Decimal]:
    """A decimal field of yagna's JSON error body (``"availableFunds":"1000"``), if the text holds it."""
    match = re.search(rf'"{name}"\s*:\s*"?(-?[0-9]+(?:\.[0-9]+)?)', text)
    if match is None:
        return None
    try:
        return Decimal(match.group(1))
    except InvalidOperation:
        return None


def _amount(value: Optional[Decimal]) -> str:
    return "?" if value is None else format(value.normalize(), "f")


def _problem_detail(problem: Any) -> str:
    where = f" on {problem.network}" if problem.network else ""
    who = f" for {problem.address}" if problem.address else ""
    text = {"InsufficientGas": "not enough gas", "InsufficientToken": "not enough tokens",
            "CantSign": "cannot sign transactions", "RpcError": "every RPC endpoint fails",
            "TxStuck": "a transaction is stuck", "InvalidChainId": "a payment's chain is not configured"}.get(
        problem.kind, problem.kind)
    if problem.needed_gas_est:
        text += f" (about {problem.needed_gas_est} needed)"
    if problem.needed_token_est:
        text += f" (about {problem.needed_token_est} needed)"
    if problem.chain_id is not None:
        text += f" (chain id {problem.chain_id})"
    return f"{problem.driver} driver{where}{who}: {text} ({problem.kind})"


# -- the command line -----------------------------------------------------------------------------


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``doctor`` subcommand to ``python -m golem_sync``'s subparsers."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "doctor", help="check yagna, the app key, payments and the market, one line each",
        description="Check, in order, what running jobs needs; print one line per check "
                    "(ok / FAIL with a fix / skip). Exit status 0 only if every check passed.")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    parser.add_argument("--yagna-url", metavar="URL", help="yagna's REST root (default: YAGNA_API_URL or "
                        "http://127.0.0.1:7465)")
    parser.add_argument("--app-key", metavar="KEY", help="the requestor app key (default: YAGNA_APPKEY)")
    parser.add_argument("--network", help="payment network (default: YAGNA_PAYMENT_NETWORK, PAYMENT_NETWORK "
                        "or hoodi)")
    parser.add_argument("--driver", help="payment driver (default: erc20)")
    parser.add_argument("--token", help="payment token (default: glm on mainnet/polygon, tglm on testnets)")
    parser.add_argument("--budget", type=float, help="the allocation to try, in GLM (default: 1.0)")
    parser.add_argument("--image-tag", metavar="TAG", help=f"the package to scan for (default: {DEFAULT_IMAGE_TAG})")
    parser.add_argument("--subnet", help="the subnet to scan (default: YAGNA_SUBNET or public)")
    parser.add_argument("--max-cpu-per-sec", type=float, metavar="P", help="market.max_cpu_per_sec")
    parser.add_argument("--max-env-per-sec", type=float, metavar="P", help="market.max_env_per_sec")
    parser.add_argument("--max-start-price", type=float, metavar="P", help="market.max_start_price")
    parser.add_argument("--scan-sec", type=float, default=DEFAULT_SCAN_SEC, metavar="N",
                        help=f"how long to collect offers (default: {DEFAULT_SCAN_SEC:g})")
    parser.set_defaults(func=main)
    return parser


def _given(**values: Any) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def main(args: argparse.Namespace) -> int:
    """Run ``doctor`` for parsed arguments; print the report; return the exit status (2: bad options)."""
    printing = not args.json

    def show(check: Check) -> None:
        if printing:
            print(check.line(), flush=True)

    try:
        report = run_doctor(
            _given(api_url=args.yagna_url, app_key=args.app_key),
            payment=_given(network=args.network, driver=args.driver, token=args.token, budget=args.budget),
            package={"image_tag": args.image_tag or DEFAULT_IMAGE_TAG},
            market=_given(subnet_tag=args.subnet, max_cpu_per_sec=args.max_cpu_per_sec,
                          max_env_per_sec=args.max_env_per_sec, max_start_price=args.max_start_price),
            scan_sec=args.scan_sec, on_check=show)
    except GolemConfigError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc), "checks": []}, indent=2))
        else:
            print(f"doctor: {exc}", flush=True)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        print("all checks passed", flush=True)
    return report.exit_code
