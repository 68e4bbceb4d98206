"""A loopback stand-in for the Golem image registry (``registry.golem.network``).

Requestor SDKs resolve an image tag or hash with ``GET /v1/image/info?tag=...`` (or
``hash=...``, plus ``count=true`` or ``dev=true``) and read ``sha3``, ``http`` (or ``https``)
and ``size`` (yapapi) from the answer. The devnet's providers do not download images, so every
well-formed tag resolves: its "hash" is the SHA3-256 of the tag text, and ``/download/<sha3>``
serves a tiny placeholder body of the advertised size.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = ["RegistryStandIn", "image_hash_for_tag"]

logger = logging.getLogger("golem_sync.devnet.registry")

_HASH = re.compile(r"^[0-9a-f]{56}$|^[0-9a-f]{64}$")  # sha3-224 (real registry) or sha3-256
_TAG = re.compile(r"^[A-Za-z0-9._/-]+(:[A-Za-z0-9._-]+)?$")


def image_hash_for_tag(tag: str) -> str:
    """The stand-in's (deterministic) image hash of ``tag``: SHA3-256 hex of its UTF-8 text."""
    return hashlib.sha3_256(tag.encode("utf-8")).hexdigest()


def _placeholder(sha3: str) -> bytes:
    return f"golem_sync devnet placeholder image {sha3}\n".encode()


class RegistryStandIn:
    """``http.server`` answering registry lookups on 127.0.0.1, on a free port.

    Threads: :meth:`start` launches one serving thread (plus one short-lived thread per request,
    from ``ThreadingHTTPServer``); :meth:`stop` shuts it down and joins it. ``tags`` (tag -> hash)
    is shared between request threads under a lock.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._tags: Dict[str, str] = {}

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("registry stand-in is not running")
        return f"http://{self._host}:{self._server.server_address[1]}"

    def start(self) -> None:
        """Bind and serve in a background thread."""
        registry = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "golem-sync-devnet-registry"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
                logger.debug("%s " + format, self.address_string(), *args)

            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                registry._handle(self, head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                registry._handle(self, head=True)

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="golem-devnet-registry", daemon=True
        )
        self._thread.start()
        logger.info("registry stand-in on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> "RegistryStandIn":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (runs on request threads) ----------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, *, head: bool) -> None:
        parts = urlsplit(req.path)
        if parts.path.rstrip("/") == "/v1/image/info":
            self._image_info(req, parse_qs(parts.query), head=head)
        elif parts.path.startswith("/download/") and _HASH.match(parts.path[len("/download/"):]):
            body = _placeholder(parts.path[len("/download/"):])
            self._send(req, 200, body, "application/octet-stream", head=head)
        else:
            self._json(req, 404, {"error": "not found", "path": parts.path}, head=head)

    def _image_info(self, req: BaseHTTPRequestHandler, query: Dict[str, Any], *, head: bool) -> None:
        tag = (query.get("tag") or [""])[0].strip()
        hash_ = (query.get("hash") or [""])[0].strip().lower()
        if bool(tag) == bool(hash_):
            self._json(req, 404, {"error": "give exactly one of tag= or hash="}, head=head)
            return
        if tag:
            if not _TAG.match(tag):
                self._json(req, 404, {"error": f"invalid tag {tag!r}"}, head=head)
                return
            sha3 = image_hash_for_tag(tag)
            with self._lock:
                self._tags[sha3] = tag
            found_tag: Optional[str] = tag
        else:
            if not _HASH.match(hash_):
                self._json(req, 404, {"error": "invalid hash (expected sha3 hex)"}, head=head)
                return
            sha3 = hash_
            with self._lock:
                found_tag = self._tags.get(sha3)
        base = f"http://{self._host}:{req.server.server_address[1]}"  # type: ignore[index]
        self._json(
            req,
            200,
            {
                "sha3": sha3,
                "http": f"{base}/download/{sha3}",
                # No TLS on loopback: the "https" link names the same plain-HTTP file so SDKs that
                # prefer it still get a working URL.
                "https": f"{base}/download/{sha3}",
                "size": len(_placeholder(sha3)),
                "tag": found_tag,
            },
            head=head,
        )

    def _json(self, req: BaseHTTPRequestHandler, status: int, body: Dict[str, Any], *, head: bool) -> None:
        self._send(req, status, json.dumps(body).encode(), "application/json", head=head)

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, *, head: bool) -> None:
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if not head:
            req.wfile.write(body)
