"""A tiny REST client for the devnet provider agent (plain ``requests``, provider app key).

The devnet must be an independent check of golem_sync's requestor client, so the provider side
never uses ``golem_sync.yagna``: it talks to yagna with its own few lines of ``requests``.

Threads: one :class:`ProviderRest` is shared by every thread of a provider agent. Each thread
gets its own ``requests.Session`` (thread-local), so calls from different threads never share
a connection; :meth:`close` closes them all and is called once, by the owner.
"""
from __future__ import annotations

import datetime as _dt
import logging
import re
import threading
from typing import Any, Callable, List, Mapping, Optional

import requests

from ..errors import ProviderApiError

__all__ = ["ProviderRest", "ProviderApiError", "rfc3339", "utcnow", "parse_timestamp", "collect_events"]

logger = logging.getLogger("golem_sync.devnet.provider")

_PREFIXES = {
    "market": "/market-api/v1",
    "activity": "/activity-api/v1",
    "payment": "/payment-api/v1",
}


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def rfc3339(when: _dt.datetime) -> str:
    """RFC 3339 with microseconds and a ``Z`` suffix, as yagna parses it."""
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def parse_timestamp(text: str) -> Optional[_dt.datetime]:
    """Parse yagna's RFC 3339 timestamps (nanoseconds, ``Z``) on Python 3.9+; ``None`` if malformed."""
    match = _TS.match(text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    when = _dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(microsecond=micros)
    if zone in (None, "Z"):
        return when.replace(tzinfo=_dt.timezone.utc)
    sign = 1 if zone[0] == "+" else -1
    hours, minutes = int(zone[1:3]), int(zone[-2:])
    return when.replace(tzinfo=_dt.timezone(sign * _dt.timedelta(hours=hours, minutes=minutes)))


class ProviderRest:
    """Calls yagna's market, activity and payment APIs as one provider identity."""

    def __init__(self, api_url: str, app_key: str, *, request_timeout: float = 30.0) -> None:
        self._api_url = api_url.rstrip("/")
        self._app_key = app_key
        self._request_timeout = request_timeout
        self._local = threading.local()
        self._sessions: List[requests.Session] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:  # never shows the app key
        return f"ProviderRest({self._api_url!r})"

    def _session(self) -> requests.Session:
        session: Optional[requests.Session] = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self._app_key}"
            session.headers["Accept"] = "application/json"
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def call(
        self,
        method: str,
        api: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Send one call; return the decoded JSON body (``None`` when empty).

        Raises:
            ProviderApiError: on a status >= 400 (``.status`` set) or a transport failure.
        """
        url = self._api_url + _PREFIXES[api] + path
        read_timeout = timeout if timeout is not None else self._request_timeout
        try:
            response = self._session().request(
                method, url, params=params, json=json, timeout=(5.0, read_timeout)
            )
        except requests.RequestException as exc:
            raise ProviderApiError(f"{method} {api}{path} failed: {exc}") from exc
        if response.status_code >= 400:
            raise ProviderApiError(
                f"{method} {api}{path} -> {response.status_code}: {response.text[:300]}",
                status=response.status_code,
            )
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            # Some yagna calls answer with a bare string that is not JSON; give it back as text.
            return response.text

    def poll(self, api: str, path: str, *, timeout: float, params: Mapping[str, Any]) -> List[Any]:
        """A long poll: ``timeout`` is the server-side wait; 408 and empty answers mean no events."""
        query = dict(params)
        query["timeout"] = timeout
        try:
            body = self.call("GET", api, path, params=query, timeout=timeout + 10.0)
        except ProviderApiError as exc:
            if exc.status == 408:
                return []
            raise
        return list(body) if isinstance(body, list) else []

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def collect_events(rest: "ProviderRest", stop: threading.Event, api: str, path: str, *, poll_timeout: float,
                   handle: Callable[[Mapping[str, Any]], None], label: str, what: str) -> None:
    """Long-poll one provider event stream (``afterTimestamp`` paging) until ``stop`` is set.

    Runs on the caller's thread. A failed poll backs off 1 s (waking at once on stop); a handler that
    raises is logged and the loop goes on, so one bad event never kills the thread.
    """
    after = utcnow()
    while not stop.is_set():
        try:
            events = rest.poll(api, path, timeout=poll_timeout,
                               params={"afterTimestamp": rfc3339(after), "maxEvents": 100})
        except ProviderApiError as exc:
            if stop.is_set():
                return
            logger.warning("%s: collecting %s events failed: %s", label, what, exc)
            stop.wait(1.0)  # yagna hiccup: back off a little instead of spinning
            continue
        for event in events:
            date = parse_timestamp(str(event.get("eventDate", "")))
            if date is not None and date > after:
                after = date
            if stop.is_set():
                return
            try:
                handle(event)
            except Exception:  # a bug here must not kill the thread
                logger.exception("%s: handling %s event %r failed", label, what, event)
