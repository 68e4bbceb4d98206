"""Options for networks, jobs and single runs: attrs classes that validate at construction.

Options come in sections (``package``, ``market``, ``agreement``, ``activity``, ``work``, ``job``;
``payment`` is network-wide because one allocation serves every job). Each section is given as its
attrs class or as a plain dict. Layers merge field by field, later ones winning:
``GolemNetwork(...)`` < ``create_job(...)`` < ``start_work(...)`` — so a job that sets only
``package={"min_mem_gib": 2}`` keeps the network's ``image_tag``.

What a layer sets is what the caller gave: the keys of a dict, or the keyword arguments an attrs
section was constructed with (``MarketOptions(offer_poll_sec=5.0)`` sets ``offer_poll_sec`` at its
layer even though 5.0 is the default, and nothing else). A section made by ``attrs.evolve`` is a
complete value (evolve passes every field), so it sets every field; a copy or an unpickled section
sets what the original set. Equality and hashing ignore which fields were given.

Every bad value raises :class:`~golem_sync.GolemConfigError` naming ``section.option``.
"""
from __future__ import annotations

import difflib
import functools
import math
import os
import re
import sys
import warnings
from decimal import Decimal
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Type, TypeVar, cast

import attrs

from .errors import GolemConfigError

__all__ = [
    "PackageOptions", "MarketOptions", "AgreementOptions", "ActivityOptions", "WorkOptions",
    "JobOptions", "VpnOptions", "PaymentOptions", "RunOptions", "OptionLayer", "merge_layers",
    "PAYMENT_NETWORKS", "DEFAULT_PAYMENT_NETWORK",
]

_O = TypeVar("_O")
_C = TypeVar("_C", bound=type)


def _records_given(cls: _C) -> _C:
    """Make ``cls`` (a dict-backed attrs class) remember which fields its constructor was given.

    They are kept in the instance's ``__dict__`` as ``_given``, outside the attrs fields, so
    ``==``, ``hash``, ``repr`` and ``attrs.asdict`` are unchanged; copies and pickles keep them.
    Deprecated keyword arguments (the class's ``renamed``) are translated first, with a warning.
    """
    attrs_init: Callable[..., None] = getattr(cls, "__init__")

    @functools.wraps(attrs_init)
    def __init__(self: Any, **kwargs: Any) -> None:
        kwargs = _translate_renamed(cls, kwargs)
        attrs_init(self, **kwargs)
        object.__setattr__(self, "_given", frozenset(kwargs))

    setattr(cls, "__init__", __init__)
    return cls


def _translate_renamed(cls: type, values: Mapping[str, Any]) -> Dict[str, Any]:
    """``values`` with deprecated option names replaced by the new ones (a DeprecationWarning each)."""
    renamed: Mapping[str, str] = getattr(cls, "renamed", {})
    out = dict(values)
    section = getattr(cls, "section", cls.__name__)
    for old, new in renamed.items():
        if old not in out:
            continue
        warnings.warn(f"{section}.{old} is deprecated; use {section}.{new} (the old name goes in the next "
                      "release)", DeprecationWarning, stacklevel=_outside_golem_sync())
        if new in out:
            raise GolemConfigError(f"{section}.{new} is given twice: as {new} and as its deprecated name {old}; "
                                   f"give {section}.{new}, not both")
        out[new] = out.pop(old)
    return out


def _outside_golem_sync() -> int:
    """The ``stacklevel`` (for a warning issued by our caller) of the first frame outside golem_sync."""
    frame = sys._getframe(2)  # the caller's caller: level 2 of the warnings.warn in our caller
    level = 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "golem_sync":
        frame = frame.f_back
        level += 1
    return level


def _given_fields(section: Any) -> Tuple[str, ...]:
    """The fields ``section`` (an instance of a :func:`_records_given` class) was constructed with."""
    names = [f.name for f in attrs.fields(type(section)) if f.init]
    given = vars(section).get("_given")
    return tuple(names) if given is None else tuple(name for name in names if name in given)


def _where(inst: Any, attribute: "attrs.Attribute[Any]") -> str:
    return f"{getattr(type(inst), 'section', type(inst).__name__)}.{attribute.name}"


def _number(*, minimum: float = 0.0, strict: bool = True, integer: bool = False,
            optional: bool = False) -> Callable[[Any, "attrs.Attribute[Any]", Any], None]:
    """A validator for numbers above (``strict``) or at least ``minimum``."""

    def check(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        if value is None and optional:
            return
        kinds: Tuple[type, ...] = (int,) if integer else (int, float, Decimal)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if integer else "a number"
            raise GolemConfigError(f"{_where(inst, attribute)} must be {kind}"
                                   f"{' or None' if optional else ''}, got {type(value).__name__} {value!r}")
        number = float(cast(float, value))
        if number < minimum or (strict and number == minimum):
            bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
            raise GolemConfigError(f"{_where(inst, attribute)} must be {bound}, got {value!r}")

    return check


def _optional_str(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise GolemConfigError(f"{_where(inst, attribute)} must be a non-empty string or None, got {value!r}")


def _str(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise GolemConfigError(f"{_where(inst, attribute)} must be a non-empty string, got {value!r}")


def _optional_callable(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not callable(value):
        raise GolemConfigError(f"{_where(inst, attribute)} must be callable, got {type(value).__name__}")


def _bool(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, bool):
        raise GolemConfigError(f"{_where(inst, attribute)} must be True or False, got {value!r}")


def _str_tuple(value: Any) -> Any:
    """Accept a list/tuple/set of strings (or one string) as a tuple; leave anything else to the validator."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(value)
    return value


def _strings(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise GolemConfigError(f"{_where(inst, attribute)} must be a list of non-empty strings, got {value!r}")


def _callables(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, tuple) or not all(callable(v) for v in value):
        raise GolemConfigError(f"{_where(inst, attribute)} must be a list of callables, got {value!r}")


def _regex(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is None:
        return
    _optional_str(inst, attribute, value)
    try:
        re.compile(value)
    except re.error as exc:
        raise GolemConfigError(f"{_where(inst, attribute)} is not a valid regular expression: {exc}") from None


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class PackageOptions:
    """What the provider must run and on what hardware. One of image_tag/image_hash/manifest is required."""

    section: ClassVar[str] = "package"
    image_tag: Optional[str] = attrs.field(default=None, validator=_optional_str)
    image_hash: Optional[str] = attrs.field(default=None, validator=_optional_str)
    image_url: Optional[str] = attrs.field(default=None, validator=_optional_str)
    manifest: Optional[str] = attrs.field(default=None, validator=_optional_str)
    manifest_sig: Optional[str] = attrs.field(default=None, validator=_optional_str)
    manifest_sig_algorithm: Optional[str] = attrs.field(default=None, validator=_optional_str)
    manifest_cert: Optional[str] = attrs.field(default=None, validator=_optional_str)
    engine: str = attrs.field(default="vm", validator=_str)
    min_mem_gib: float = attrs.field(default=0.5, validator=_number())
    min_storage_gib: float = attrs.field(default=2.0, validator=_number())
    min_cpu_threads: int = attrs.field(default=1, validator=_number(integer=True))
    min_cpu_cores: int = attrs.field(default=1, validator=_number(integer=True))
    capabilities: Tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_strings)
    registry_url: Optional[str] = attrs.field(default=None, validator=_optional_str)
    use_https: bool = attrs.field(default=False, validator=_bool)


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class MarketOptions:
    """The demand and the choice of provider."""

    section: ClassVar[str] = "market"
    #: Deprecated option names (kept for one release) and their new names.
    renamed: ClassVar[Mapping[str, str]] = {"payment_timeout_sec": "payment_due_sec"}
    subnet_tag: Optional[str] = attrs.field(default=None, validator=_optional_str)
    expiration_sec: int = attrs.field(default=1800, validator=_number(integer=True))
    debit_note_accept_timeout_sec: int = attrs.field(default=120, validator=_number(integer=True))
    debit_note_interval_sec: int = attrs.field(default=120, validator=_number(integer=True))
    # The demand's ``golem.com.scheme.payu.payment-timeout-sec?``: the requestor promises to pay
    # each accepted debit note within this many seconds (mid-agreement payments).
    payment_due_sec: int = attrs.field(default=43200, validator=_number(integer=True))
    offer_poll_sec: float = attrs.field(default=5.0, validator=_number())
    max_offer_events: int = attrs.field(default=10, validator=_number(integer=True))
    proposal_filter: Optional[Callable[[Any], bool]] = attrs.field(default=None, validator=_optional_callable)
    proposal_scorer: Optional[Callable[[Any], float]] = attrs.field(default=None, validator=_optional_callable)
    allowed_provider_ids: Tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_strings)
    denied_provider_ids: Tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_strings)
    allowed_provider_names: Tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_strings)
    denied_provider_names: Tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_strings)
    allowed_name_regex: Optional[str] = attrs.field(default=None, validator=_regex)
    denied_name_regex: Optional[str] = attrs.field(default=None, validator=_regex)
    max_start_price: Optional[float] = attrs.field(default=None, validator=_number(strict=False, optional=True))
    max_cpu_per_sec: Optional[float] = attrs.field(default=None, validator=_number(strict=False, optional=True))
    max_env_per_sec: Optional[float] = attrs.field(default=None, validator=_number(strict=False, optional=True))

    def resolved_subnet(self) -> str:
        return self.subnet_tag or os.environ.get("YAGNA_SUBNET") or "public"

    @property
    def payment_timeout_sec(self) -> int:
        """Deprecated name of :attr:`payment_due_sec` (read-only; goes in the next release)."""
        return self.payment_due_sec


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class AgreementOptions:
    """Signing agreements."""

    section: ClassVar[str] = "agreement"
    approval_timeout_sec: float = attrs.field(default=60.0, validator=_number())
    valid_sec: int = attrs.field(default=3600, validator=_number(integer=True))


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class ActivityOptions:
    """Creating activities and executing batches on them."""

    section: ClassVar[str] = "activity"
    create_timeout_sec: float = attrs.field(default=60.0, validator=_number())
    execute_timeout_sec: float = attrs.field(default=300.0, validator=_number())
    result_poll_sec: float = attrs.field(default=5.0, validator=_number())
    destroy_timeout_sec: float = attrs.field(default=10.0, validator=_number())


def _env(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, dict):
        raise GolemConfigError(f"{_where(inst, attribute)} must be a dict of strings, got {type(value).__name__}")
    for name, text in value.items():
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise GolemConfigError(f"{_where(inst, attribute)}: invalid environment variable name {name!r}")
        if not isinstance(text, str):
            raise GolemConfigError(f"{_where(inst, attribute)}: {name} must be a string, got {type(text).__name__}")


def _env_dict(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class WorkOptions:
    """The worker's context."""

    section: ClassVar[str] = "work"
    preparing_timeout_sec: float = attrs.field(default=300.0, validator=_number())
    raise_on_command_error: bool = attrs.field(default=False, validator=_bool)
    setup: Tuple[Callable[[Any], Any], ...] = attrs.field(default=(), converter=tuple, validator=_callables)
    teardown: Tuple[Callable[[Any], Any], ...] = attrs.field(default=(), converter=tuple, validator=_callables)
    # Environment of every command of the job, passed in ``deploy``; a later option layer replaces
    # the whole dict. Per-command env (``ctx.run(..., env=)``) is added by a shell wrapper on top.
    env: Dict[str, str] = attrs.field(factory=dict, converter=_env_dict, validator=_env, hash=False)
    # The output kept per stream (stdout, stderr) of each command, in UTF-8 bytes: the provider is
    # asked for the last ``max_output_bytes`` (+1, to tell a cut); more is cut to the last
    # ``max_output_bytes`` and ``Result.truncated`` set; results larger than the cap allows are
    # refused with GolemActivityError. See golem_sync._work.result.
    max_output_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_number(integer=True))


def _network_cidr(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    import ipaddress

    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError) as exc:
        raise GolemConfigError(f"{_where(inst, attribute)} must be an IPv4 network like '192.168.0.0/24': {exc}") \
            from None
    if net.num_addresses < 4:
        raise GolemConfigError(f"{_where(inst, attribute)}: {value} is too small for a requestor and a provider")


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class VpnOptions:
    """An opt-in VPN per job attempt: ``vpn={"enabled": True}`` (the provider must support VPN).

    Attributes:
        enabled: create a VPN over yagna's net API for the job and pass it to the provider in deploy.
        ip: the VPN's address range; the requestor takes the first address, the provider the next.
    """

    section: ClassVar[str] = "vpn"
    enabled: bool = attrs.field(default=False, validator=_bool)
    ip: str = attrs.field(default="192.168.0.0/24", validator=_network_cidr)


def _finite(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is not None and not math.isfinite(float(value)):
        raise GolemConfigError(f"{_where(inst, attribute)} must be a finite number, got {value!r}")


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class JobOptions:
    """Limits of a whole job.

    Attributes:
        startup_timeout_sec: from ``start_work`` until an agreement is approved; ``None`` waits forever.
        timeout_sec: the whole job, worker included; ``None`` for no limit.
        max_retries: how many times to try again on a NEW provider when the provider fails
            (not when the worker itself raises).
        max_cost: the most the job may be billed, over all its agreements (in the payment
            token, GLM); a debit note or invoice beyond it is not accepted, the agreement is
            terminated and the job fails with ``GolemBudgetError``. ``None``: no cap.
    """

    section: ClassVar[str] = "job"
    startup_timeout_sec: Optional[float] = attrs.field(default=180.0, validator=_number(optional=True))
    timeout_sec: Optional[float] = attrs.field(default=None, validator=_number(optional=True))
    max_retries: int = attrs.field(default=0, validator=_number(strict=False, integer=True))
    max_cost: Optional[float] = attrs.field(default=None, validator=[_number(optional=True), _finite])


#: The payment networks yagna 0.17.6 knows (its ``erc20-<network>-<token>`` platforms) and the
#: token each pays in: GLM on the mainnets, tGLM on the testnets.
PAYMENT_NETWORKS: Mapping[str, str] = {
    "mainnet": "glm", "polygon": "glm",
    "hoodi": "tglm", "holesky": "tglm", "sepolia": "tglm", "goerli": "tglm", "rinkeby": "tglm",
    "amoy": "tglm", "mumbai": "tglm",
}
#: Golem's current testnet (holesky is no longer served).
DEFAULT_PAYMENT_NETWORK = "hoodi"


def _unknown_network(name: str, where: str) -> GolemConfigError:
    """``where`` is the option (``payment.network``) or the variable (``YAGNA_PAYMENT_NETWORK``)."""
    close = difflib.get_close_matches(name.lower(), PAYMENT_NETWORKS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return GolemConfigError(f"{where}={name!r} is not a payment network yagna knows (known: "
                            f"{', '.join(PAYMENT_NETWORKS)}){hint}")


def _payment_network(inst: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    _optional_str(inst, attribute, value)
    if value is not None and value not in PAYMENT_NETWORKS:
        raise _unknown_network(value, _where(inst, attribute))


@_records_given
@attrs.frozen(kw_only=True, slots=False)
class PaymentOptions:
    """The network-wide allocation and how debit notes and invoices are accepted."""

    section: ClassVar[str] = "payment"
    #: Deprecated option names (kept for one release) and their new names.
    renamed: ClassVar[Mapping[str, str]] = {"payment_timeout_sec": "invoice_wait_sec"}
    budget: float = attrs.field(default=1.0, validator=_number())
    driver: str = attrs.field(default="erc20", validator=_str)
    # None: ``YAGNA_PAYMENT_NETWORK``, else ``PAYMENT_NETWORK``, else ``hoodi``.
    network: Optional[str] = attrs.field(default=None, validator=_payment_network)
    # None: the network's own token (``glm`` on mainnet and polygon, ``tglm`` on the testnets).
    token: Optional[str] = attrs.field(default=None, validator=_optional_str)
    allocation_expiration_sec: int = attrs.field(default=3600, validator=_number(integer=True))
    debit_note_filter: Optional[Callable[[Any], bool]] = attrs.field(default=None, validator=_optional_callable)
    invoice_filter: Optional[Callable[[Any], bool]] = attrs.field(default=None, validator=_optional_callable)
    max_debit_note_amount: Optional[float] = attrs.field(default=None, validator=_number(strict=False, optional=True))
    max_invoice_amount: Optional[float] = attrs.field(default=None, validator=_number(strict=False, optional=True))
    # Long-poll length of the network's three event pollers; close() waits out at most one.
    event_poll_sec: float = attrs.field(default=2.0, validator=_number())
    # How long ``GolemNetwork.close()`` waits for the invoices of ended agreements.
    invoice_wait_sec: float = attrs.field(default=60.0, validator=_number(strict=False))

    def resolved_network(self) -> str:
        """The network to pay on: the option, else ``YAGNA_PAYMENT_NETWORK``, else ``PAYMENT_NETWORK``,
        else ``hoodi``. An unknown name (from the environment too) raises :class:`GolemConfigError`."""
        if self.network:
            return self.network
        for var in ("YAGNA_PAYMENT_NETWORK", "PAYMENT_NETWORK"):
            value = os.environ.get(var, "").strip()
            if value:
                if value not in PAYMENT_NETWORKS:
                    raise _unknown_network(value, var)
                return value
        return DEFAULT_PAYMENT_NETWORK

    def resolved_token(self) -> str:
        """The token to pay in: the option, else the network's own (``glm`` or ``tglm``)."""
        return self.token or PAYMENT_NETWORKS[self.resolved_network()]

    def platform(self) -> str:
        """The payment platform name, e.g. ``erc20-hoodi-tglm``."""
        return f"{self.driver}-{self.resolved_network()}-{self.resolved_token()}"

    @property
    def payment_timeout_sec(self) -> float:
        """Deprecated name of :attr:`invoice_wait_sec` (read-only; goes in the next release)."""
        return self.invoice_wait_sec


_JOB_SECTIONS: Dict[str, Type[Any]] = {
    cls.section: cls
    for cls in (PackageOptions, MarketOptions, AgreementOptions, ActivityOptions, WorkOptions, JobOptions,
                VpnOptions)
}


@attrs.frozen(kw_only=True)
class RunOptions:
    """Everything one job run needs, after merging network, job and call layers."""

    package: PackageOptions = attrs.Factory(PackageOptions)
    market: MarketOptions = attrs.Factory(MarketOptions)
    agreement: AgreementOptions = attrs.Factory(AgreementOptions)
    activity: ActivityOptions = attrs.Factory(ActivityOptions)
    work: WorkOptions = attrs.Factory(WorkOptions)
    job: JobOptions = attrs.Factory(JobOptions)
    vpn: VpnOptions = attrs.Factory(VpnOptions)


def _partial(cls: Type[Any], value: Any) -> Dict[str, Any]:
    """The explicitly set fields of one section, validated now (so errors point at the caller).

    For a dict, its keys; for an instance, the keyword arguments it was constructed with (a field
    given equal to its default is still given).
    """
    section = cls.section
    if value is None:
        return {}
    if isinstance(value, cls):
        return {name: getattr(value, name) for name in _given_fields(value)}
    if not isinstance(value, Mapping):
        raise GolemConfigError(f"{section} options must be a dict or {cls.__name__}, got {type(value).__name__}")
    value = _translate_renamed(cls, value)
    names = [f.name for f in attrs.fields(cls)]
    for key in value:
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=1)
            suggestion = f"; did you mean {section}.{hint[0]}?" if hint else f"; known: {', '.join(names)}"
            raise GolemConfigError(f"unknown option {section}.{key}{suggestion}")
    cls(**value)  # validate now, with defaults for what is not given
    return dict(value)


@attrs.frozen
class OptionLayer:
    """One validated layer of job options (the network's, a job's or a call's)."""

    sections: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, options: Mapping[str, Any], *, where: str) -> "OptionLayer":
        """Validate ``{section: dict | attrs instance}``; unknown sections are an error naming ``where``."""
        sections: Dict[str, Mapping[str, Any]] = {}
        for name, value in options.items():
            if name not in _JOB_SECTIONS:
                known = list(_JOB_SECTIONS)
                hint = difflib.get_close_matches(name, known, n=1)
                extra = " (payment options are network-wide: pass them to GolemNetwork)" if name == "payment" else ""
                suggestion = f"; did you mean {hint[0]!r}?" if hint and not extra else f"; known: {', '.join(known)}"
                raise GolemConfigError(f"unknown option {name!r} for {where}{extra}{suggestion}")
            sections[name] = _partial(_JOB_SECTIONS[name], value)
        return cls(sections)


def merge_layers(*layers: OptionLayer) -> RunOptions:
    """Merge layers field by field (later wins) into complete :class:`RunOptions`."""
    built: Dict[str, Any] = {}
    for name, cls in _JOB_SECTIONS.items():
        merged: Dict[str, Any] = {}
        for layer in layers:
            merged.update(layer.sections.get(name, {}))
        built[name] = cls(**merged)
    return RunOptions(**built)


def parse_section(cls: Type[_O], value: Any) -> _O:
    """One section from a dict, an instance or None (defaults)."""
    return cls(**_partial(cls, value))
