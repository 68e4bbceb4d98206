"""Keeping a database password out of reprs, log lines and error messages.

:func:`mask_conninfo` shows a connection string with its password replaced by ``***``
(``postgresql://user:***@host/db``, ``password=***``); :func:`scrub` removes the password of a
connection string from any text (libpq quotes the string, or parts of it, in some of its errors).
No psycopg import: it works on strings libpq refuses to parse too.
"""
from __future__ import annotations

import re
from typing import List
from urllib.parse import unquote

__all__ = ["mask_conninfo", "scrub"]

MASK = "***"

# scheme://user:password@  (libpq ends the user info at the first '@' or '/')
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s\"']*:)(?P<secret>[^@/\s\"']*)(?=@)")
# ?password=... or &password=... in a URL's query
_URL_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<secret>[^&#\s\"']*)", re.IGNORECASE)
# password=... in a keyword/value string: a bare word or a single-quoted value with \-escapes
_KEYWORD = re.compile(r"(?P<head>(?<![\w?&])password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'?|[^\s'\"]+)",
                      re.IGNORECASE)


def mask_conninfo(conninfo: str) -> str:
    """``conninfo`` with every password in it replaced by ``***``."""
    text = _URL_USERINFO.sub(lambda m: m.group("head") + MASK, conninfo)
    text = _URL_QUERY.sub(lambda m: m.group("head") + MASK, text)
    return _KEYWORD.sub(lambda m: m.group("head") + MASK, text)


def _secrets(conninfo: str) -> List[str]:
    """The password(s) in ``conninfo``, as written and as libpq reads them (decoded, unquoted)."""
    found: List[str] = []
    for pattern in (_URL_USERINFO, _URL_QUERY):
        for match in pattern.finditer(conninfo):
            raw = match.group("secret")
            found += [raw, unquote(raw)]
    for match in _KEYWORD.finditer(conninfo):
        raw = match.group("secret")
        found.append(raw)
        if raw.startswith("'"):
            found.append(re.sub(r"\\(.)", r"\1", raw[1:-1] if raw.endswith("'") and len(raw) > 1 else raw[1:]))
    # Longest first, so that a password is never half-replaced by a shorter spelling of it.
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, conninfo: str) -> str:
    """``text`` (an error message, say) without the password of ``conninfo``, in any spelling."""
    if conninfo:
        text = text.replace(conninfo, mask_conninfo(conninfo))
    text = mask_conninfo(text)
    for secret in _secrets(conninfo):
        text = text.replace(secret, MASK)
    return text
