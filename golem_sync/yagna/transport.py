"""HTTP transport to yagna: one ``requests.Session``, auth, timeouts, retries, error mapping.

Threads: a :class:`Transport` is shared by every thread of a :class:`~golem_sync.GolemNetwork`.
``request`` and ``stream`` are safe to call concurrently (``requests.Session`` with a
thread-safe urllib3 pool sized by ``YagnaConfig.pool_size``); ``close`` is called once, by the owner.
"""
from __future__ import annotations

import json as jsonlib
import logging
import os
import time
from typing import Any, Mapping, Optional, Tuple

import requests
import requests.utils
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..errors import (
    YagnaAuthError,
    YagnaError,
    YagnaNotFoundError,
    YagnaProtocolError,
    YagnaRequestError,
    YagnaResponseTooLargeError,
    YagnaServerError,
    YagnaTimeoutError,
    YagnaUnreachableError,
)
from .abortable import AbortableAdapter
from .config import API_PREFIXES, YagnaConfig

__all__ = ["Transport", "IDEMPOTENT_METHODS"]

logger = logging.getLogger("golem_sync.yagna")

#: Methods retried on 5xx and read errors. POST is never retried after the request may have
#: reached yagna (it may have created something); a refused connection is retried for every
#: method because nothing was sent.
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})
_RETRY_STATUSES = frozenset({500, 502, 503, 504})


def _error_detail(response: requests.Response) -> Optional[str]:
    """yagna's own message from an error body (``{"message": ...}``), or the text itself."""
    text = response.text.strip()
    if not text:
        return None
    try:
        body = response.json()
    except ValueError:
        return text[:500]
    if isinstance(body, dict):
        for key in ("message", "error", "msg"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return text[:500]


def _session_for(config: YagnaConfig) -> requests.Session:
    """A session that read the environment (proxies, CA bundle) once, when it was made.

    With ``trust_env`` requests re-reads it on every call, about a sixth of a short job's CPU time.
    When yagna's APIs sit on hosts the proxy settings treat differently, it is left to do so.
    """
    session = requests.Session()
    proxies = [requests.utils.get_environ_proxies(config.base_url(api)) for api in API_PREFIXES]
    if all(p == proxies[0] for p in proxies):
        session.trust_env = False
        session.proxies.update(proxies[0])
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
    return session


class _BearerAuth(requests.auth.AuthBase):
    """Adds yagna's ``Authorization: Bearer <app key>`` header; its repr never shows the key."""

    def __init__(self, app_key: str) -> None:
        self._header = f"Bearer {app_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<app key>)"


class Transport:
    """Sends requests to the yagna REST APIs and turns every failure into a :class:`YagnaError`."""

    def __init__(self, config: YagnaConfig, session: Optional[requests.Session] = None, *,
                 abortable: bool = False) -> None:
        """``abortable=True`` lets :meth:`abort` end calls in flight (for long-poll loops)."""
        self.config = config
        self._session = session or _session_for(config)
        retry = Retry(
            total=config.retries,
            connect=config.retries,
            read=config.retries,
            status=config.retries,
            other=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=_RETRY_STATUSES,
            backoff_factor=config.backoff,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        adapter_class = AbortableAdapter if abortable else HTTPAdapter
        adapter = adapter_class(pool_connections=4, pool_maxsize=config.pool_size, max_retries=retry)
        self._adapter = adapter
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # As an auth hook rather than a default header: requests then skips its ~/.netrc lookup,
        # which it otherwise repeats on every call.
        self._session.auth = _BearerAuth(config.app_key)
        self._session.headers["Accept"] = "application/json"

    def __repr__(self) -> str:
        return f"Transport(api_url={self.config.api_url!r})"

    def url(self, api: str, path: str) -> str:
        """The full URL of ``path`` under ``api``; build ``path`` with :func:`golem_sync.yagna.seg` for ids."""
        return self.config.base_url(api) + path

    def request(
        self,
        method: str,
        api: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
        long_poll: Optional[float] = None,
        max_body: Optional[int] = None,
    ) -> Any:
        """Call yagna and return the decoded JSON body (``None`` for an empty body).

        Args:
            method, api, path: e.g. ``"GET", "market", "/demands"``.
            params: query parameters; ``None`` values are left out.
            json: the request body, sent as JSON when not ``None``.
            timeout: client-side read timeout in seconds (default ``config.request_timeout``).
            long_poll: the server-side wait of a long-poll call, in seconds. The read timeout
                becomes ``long_poll + config.long_poll_margin`` and an HTTP 408 means "nothing yet":
                the call returns ``None`` instead of raising.
            max_body: refuse a body larger than this many bytes with
                :class:`~golem_sync.YagnaResponseTooLargeError`, reading at most that much of it
                (for answers whose size a provider decides, e.g. batch results).
        """
        response, elapsed = self._send(method, api, path, params=params, json=json, timeout=timeout,
                                       long_poll=long_poll, stream=max_body is not None)
        logger.debug("%s %s%s -> %s in %.3fs", method, api, path, response.status_code, elapsed)
        if max_body is not None:
            try:
                if response.status_code < 400:  # error bodies are yagna's own, and short
                    _read_limited(response, max_body, method, path)
                else:
                    _ = response.content
            except BaseException:
                response.close()  # a refused body is not read on: the connection is dropped
                raise
        if long_poll is not None and response.status_code == 408:
            return None
        self._raise_for_status(response, method, api, path)
        return self._decode(response, method, api, path)

    def stream(
        self,
        method: str,
        api: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        read_timeout: Optional[float] = None,
    ) -> requests.Response:
        """Open a streaming response (e.g. ``text/event-stream``). The caller must close it."""
        response, _ = self._send(method, api, path, params=params, json=None, timeout=read_timeout,
                                 long_poll=None, stream=True, headers=headers)
        try:
            self._raise_for_status(response, method, api, path)
        except YagnaError:
            response.close()
            raise
        return response

    def close(self) -> None:
        """Close every pooled connection. Further calls open new ones."""
        self._session.close()

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` was called (an abortable transport then refuses new calls)."""
        return isinstance(self._adapter, AbortableAdapter) and self._adapter.aborted

    def abort(self) -> None:
        """End every call in flight at once (they raise YagnaUnreachableError) and refuse new ones.

        Only for a transport made with ``abortable=True``.
        """
        if not isinstance(self._adapter, AbortableAdapter):
            raise TypeError("this transport was not created with abortable=True")
        self._adapter.abort()

    # -- internals ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        api: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]],
        json: Any,
        timeout: Optional[float],
        long_poll: Optional[float],
        stream: bool,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Tuple[requests.Response, float]:
        url = self.url(api, path)
        if long_poll is not None:
            read_timeout = long_poll + self.config.long_poll_margin
        else:
            read_timeout = timeout if timeout is not None else self.config.request_timeout
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                url,
                params=query,
                json=json,
                timeout=(self.config.connect_timeout, read_timeout),
                stream=stream,
                headers=dict(headers) if headers else None,
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise YagnaUnreachableError(
                f"cannot reach yagna at {self.config.base_url(api)}: connection timed out "
                f"after {self.config.connect_timeout}s ({method} {path})",
                method=method, path=path,
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise YagnaTimeoutError(
                f"yagna did not answer {method} {path} within {read_timeout:g}s",
                method=method, path=path,
            ) from exc
        except requests.exceptions.RetryError as exc:
            # urllib3 gave up after retrying 5xx answers; report the last cause.
            raise YagnaServerError(
                f"yagna kept failing on {method} {path} after {self.config.retries} retries: {exc}",
                method=method, path=path,
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            if _is_read_timeout(exc):
                # After urllib3 retried a GET's read timeouts, requests reports a plain
                # ConnectionError: it is still yagna not answering in time, not "unreachable".
                raise YagnaTimeoutError(
                    f"yagna did not answer {method} {path} within {read_timeout:g}s",
                    method=method, path=path,
                ) from exc
            raise YagnaUnreachableError(
                f"cannot reach yagna at {self.config.base_url(api)} ({method} {path}): "
                f"{_short_reason(exc)}. Is yagna running (`yagna service run`) and YAGNA_API_URL right?",
                method=method, path=path,
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise YagnaError(f"{method} {path} failed: {exc}", method=method, path=path) from exc
        return response, time.monotonic() - started

    @staticmethod
    def _raise_for_status(response: requests.Response, method: str, api: str, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _error_detail(response)
        where = f"{method} {path}"
        suffix = f": {detail}" if detail else ""
        kwargs: dict[str, Any] = {"status": status, "method": method, "path": path, "detail": detail}
        if status in (401, 403):
            raise YagnaAuthError(
                f"yagna rejected the app key ({status}) on {where}{suffix}. Check YAGNA_APPKEY "
                "(`yagna app-key list` shows the valid keys)",
                **kwargs,
            )
        if status in (404, 410):
            raise YagnaNotFoundError(f"yagna: not found ({status}) on {where}{suffix}", **kwargs)
        if status == 408:
            raise YagnaTimeoutError(f"yagna timed out (408) on {where}{suffix}", **kwargs)
        if status >= 500:
            raise YagnaServerError(f"yagna failed ({status}) on {where}{suffix}", **kwargs)
        raise YagnaRequestError(f"yagna rejected {where} ({status}){suffix}", **kwargs)

    @staticmethod
    def _decode(response: requests.Response, method: str, api: str, path: str) -> Any:
        content = response.content
        if not content or not content.strip():
            return None
        try:
            # A body that is not UTF-8 (yagna's never is) is decoded with replacement characters.
            return jsonlib.loads(content.decode("utf-8", "replace"))
        except ValueError as exc:
            snippet = content[:200].decode("utf-8", "replace")
            raise YagnaProtocolError(
                f"yagna answered {method} {path} with a body that is not JSON: {snippet!r}",
                status=response.status_code, method=method, path=path,
            ) from exc


def _read_limited(response: requests.Response, limit: int, method: str, path: str) -> None:
    """Read the body of a streamed ``response`` into it, refusing one past ``limit`` bytes."""
    def too_large(size: str) -> YagnaResponseTooLargeError:
        return YagnaResponseTooLargeError(
            f"yagna's answer to {method} {path} is {size}, more than the {limit} bytes this call allows",
            limit=limit, status=response.status_code, method=method, path=path)

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"{int(declared)} bytes")
    chunks = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large("larger")
            chunks.append(chunk)
    except requests.exceptions.RequestException as exc:
        reason = "timed out" if "timed out" in str(exc).lower() else "broke"
        error_class = YagnaTimeoutError if reason == "timed out" else YagnaUnreachableError
        raise error_class(f"reading yagna's answer to {method} {path} {reason}: {_short_reason(exc)}",
                          method=method, path=path) from exc
    response._content = b"".join(chunks)  # what response.content returns from now on


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _is_read_timeout(exc: requests.exceptions.ConnectionError) -> bool:
    cause = exc.args[0] if exc.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, ReadTimeoutError)


def _short_reason(exc: Exception) -> str:
    """The innermost reason of a connection error, without urllib3's pool boilerplate."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "Connection reset",
                   "Remote end closed connection", "No route to host"):
        if marker in text:
            return marker.lower()
    return text[:200]
