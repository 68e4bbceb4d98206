"""The devnet's exe-unit emulator: plays the provider's exe-unit for one activity.

Four rooms:

- :mod:`.unit`: :class:`ExeUnit`, the GSB protocol handler (``/public/exeunit/<activityId>``),
  activity state and usage reporting, and what each ExeScript command does;
- :mod:`.batch`: the batch engine (commands in order, results, runtime events, one batch at a time);
- :mod:`.process`: the host process runner for ``run`` (capture modes, CPU usage, kill);
- :mod:`.paths`: the container-path to host-path mapper (refuses escapes).

**Commands run on the host, unsandboxed**: it is a test network, not a sandbox.
"""
from __future__ import annotations

from ..errors import ExeUnitError
from .paths import CONTAINER_DIRS
from .unit import ExeUnit, ExeUnitFaults

__all__ = ["ExeUnit", "ExeUnitFaults", "ExeUnitError", "CONTAINER_DIRS"]
