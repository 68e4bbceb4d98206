"""Turn package options (image tag, hash, URL or manifest) into demand properties and constraints.

An ``image_tag`` or a bare ``image_hash`` is resolved through the image registry
(``GOLEM_REGISTRY_URL``, default the public registry) to the sha3 hash and the download URL that
providers need; an ``image_hash`` with an ``image_url`` needs no lookup.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Tuple

import attrs
import requests

from .errors import GolemConfigError, GolemError
from ._options import PackageOptions

__all__ = ["Decorations", "resolve_package", "package_constraints", "DEFAULT_REGISTRY_URL"]

logger = logging.getLogger("golem_sync.package")

DEFAULT_REGISTRY_URL = "https://registry.golem.network"
_REGISTRY_TIMEOUT = (5.0, 20.0)


@attrs.frozen
class Decorations:
    """Demand properties (flat keys) and constraint clauses contributed by one source."""

    properties: Dict[str, object] = attrs.field(factory=dict)
    constraints: List[str] = attrs.field(factory=list)


def check_package(options: PackageOptions) -> None:
    """Raise :class:`GolemConfigError` if the options cannot describe a runnable package."""
    if not (options.image_tag or options.image_hash or options.manifest):
        raise GolemConfigError(
            "package: no image given; set package.image_tag (e.g. 'golem/alpine:latest'), "
            "package.image_hash or package.manifest"
        )
    if options.image_url and not options.image_hash:
        raise GolemConfigError("package.image_url needs package.image_hash (the sha3 of the image it points to)")
    if options.image_tag and options.image_hash:
        raise GolemConfigError("package: give either image_tag or image_hash, not both")


def resolve_package(options: PackageOptions, *, session: Optional[requests.Session] = None) -> Decorations:
    """Build the package's decorations, asking the registry where needed. Blocking (one HTTP call)."""
    check_package(options)
    properties: Dict[str, object] = {"golem.srv.comp.vm.package_format": "gvmkit-squash"}
    if options.image_tag or options.image_hash:
        sha3, url = _image_location(options, session)
        properties["golem.srv.comp.task_package"] = f"hash:sha3:{sha3}:{url}"
    if options.manifest:
        properties["golem.srv.comp.payload"] = options.manifest
        if options.manifest_sig:
            properties["golem.srv.comp.payload.sig"] = options.manifest_sig
            properties["golem.srv.comp.payload.sig.algorithm"] = options.manifest_sig_algorithm or "sha256"
        if options.manifest_cert:
            properties["golem.srv.comp.payload.cert"] = options.manifest_cert
    return Decorations(properties, package_constraints(options))


def package_constraints(options: PackageOptions) -> List[str]:
    """The constraint clauses of the package options (hardware, runtime, capabilities); no lookup."""
    constraints = [
        f"(golem.inf.mem.gib>={options.min_mem_gib:g})",
        f"(golem.inf.storage.gib>={options.min_storage_gib:g})",
        f"(golem.runtime.name={options.engine})",
        f"(golem.inf.cpu.cores>={options.min_cpu_cores})",
        f"(golem.inf.cpu.threads>={options.min_cpu_threads})",
    ]
    constraints += [f"(golem.runtime.capabilities={cap})" for cap in options.capabilities]
    return constraints


def _image_location(options: PackageOptions, session: Optional[requests.Session]) -> Tuple[str, str]:
    if options.image_hash and options.image_url:
        return _strip_hash(options.image_hash), options.image_url
    registry = (options.registry_url or os.environ.get("GOLEM_REGISTRY_URL") or DEFAULT_REGISTRY_URL).rstrip("/")
    params = {"count": "true"}
    if os.environ.get("GOLEM_DEV_MODE", "").lower() == "true":
        params = {"dev": "true"}
    if options.image_tag:
        params["tag"] = options.image_tag
        what = f"image tag {options.image_tag!r}"
    else:
        params["hash"] = _strip_hash(options.image_hash or "")
        what = f"image hash {options.image_hash!r}"
    url = f"{registry}/v1/image/info"
    http = session or requests
    try:
        response = http.get(url, params=params, timeout=_REGISTRY_TIMEOUT)
    except requests.RequestException as exc:
        raise GolemError(f"cannot reach the image registry at {registry} to resolve {what}: {exc}") from exc
    if response.status_code == 404:
        raise GolemConfigError(f"package: the registry at {registry} does not know {what}")
    if response.status_code >= 400:
        raise GolemError(f"the image registry at {registry} failed ({response.status_code}) resolving {what}")
    try:
        info = response.json()
        sha3 = str(info["sha3"])
        link = str(info["https"] if options.use_https and info.get("https") else info["http"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GolemError(f"the image registry at {registry} answered {what} with an unexpected body") from exc
    logger.debug("resolved %s to %s", what, sha3)
    return sha3, link


def _strip_hash(value: str) -> str:
    return value[len("sha3:"):] if value.startswith("sha3:") else value
