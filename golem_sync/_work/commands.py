"""Build ``run`` commands from what users write: a shell line, or an executable and its arguments.

yagna's ExeScript ``run`` has no ``env`` (only ``deploy`` does), so per-command environment
variables are set by a ``/bin/sh`` wrapper that exports them and then ``exec``s the command.
"""
from __future__ import annotations

import re
import shlex
from typing import Mapping, Optional, Sequence, Union

from ..errors import GolemConfigError
from ..yagna.models import Capture, Run

__all__ = ["build_run", "check_timeout"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHELL = "/bin/sh"


def build_run(command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
              env: Optional[Mapping[str, str]] = None, capture: Optional[Capture] = None) -> Run:
    """``run("echo hi")`` runs through ``/bin/sh -c``; ``run("/bin/echo", ["hi"])`` runs directly."""
    capture = capture or Capture.at_end()
    exports = _exports(env)
    if isinstance(command, str) and args is None:
        if not command.strip():
            raise GolemConfigError("run: the command is empty")
        return Run(entry_point=SHELL, args=["-c", exports + command], capture=capture)
    if isinstance(command, str):
        argv = [command, *_strings(args or [], "args")]
    else:
        if args is not None:
            raise GolemConfigError("run: pass either a list [exe, *args] or exe and args, not both")
        argv = _strings(command, "command")
    if not argv or not argv[0]:
        raise GolemConfigError("run: the executable is empty")
    if exports:
        return Run(entry_point=SHELL, args=["-c", exports + 'exec "$@"', SHELL, *argv], capture=capture)
    return Run(entry_point=argv[0], args=argv[1:], capture=capture)


def check_timeout(timeout: Optional[float], what: str = "") -> None:
    """Refuse a command timeout that is not a positive number of seconds (``None``: the default)."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        where = f"{what}: " if what else ""
        raise GolemConfigError(f"{where}timeout must be a positive number of seconds, got {timeout!r}")


def _exports(env: Optional[Mapping[str, str]]) -> str:
    if not env:
        return ""
    parts = []
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise GolemConfigError(f"run: invalid environment variable name {name!r}")
        if not isinstance(value, str):
            raise GolemConfigError(f"run: environment variable {name} must be a string, got {type(value).__name__}")
        parts.append(f"export {name}={shlex.quote(value)}; ")
    return "".join(parts)


def _strings(values: Sequence[str], what: str) -> list:  # type: ignore[type-arg]
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise GolemConfigError(f"run: {what} must be a list of strings, got {values!r}")
    return list(values)
