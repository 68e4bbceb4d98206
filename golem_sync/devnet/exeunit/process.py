"""The exe-unit's host process runner: runs one ``run`` command as a host process, unsandboxed.

The child leads its own session (so a kill also ends what ``sh -c`` spawned), gets only the given
environment, and has its stdout/stderr read as they arrive (each chunk goes to ``on_output``) and
captured per the ExeScript ``capture`` spec (:class:`CaptureSpec`). CPU time is measured for
``golem.usage.cpu_sec``: finished children by ``wait4`` rusage, the running one from ``/proc``.

Threads: :meth:`ProcessRunner.run` blocks the calling batch thread until the child exits (no time
limit: an ExeScript command runs as long as it runs); :meth:`ProcessRunner.kill` and
:meth:`ProcessRunner.cpu_seconds` may be called from any thread.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import attrs

from ..errors import ExeUnitError

__all__ = ["CaptureSpec", "CommandFailed", "ProcessRunner", "HOST_ENV"]

#: Host variables a command inherits (besides the deploy env and HOME).
HOST_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


class CommandFailed(Exception):
    """A run ended with a non-zero exit code; carries the message and the captured outputs."""

    def __init__(self, message: str, return_code: int, outputs: Tuple[Any, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.return_code = return_code
        self.outputs = outputs


@attrs.frozen
class CaptureSpec:
    """One stream's capture mode (ExeScript ``capture.stdout`` / ``capture.stderr``)."""

    enabled: bool = True
    head: Optional[int] = None
    tail: Optional[int] = None
    binary: bool = False

    @classmethod
    def parse(cls, capture: Any, stream: str) -> "CaptureSpec":
        if not isinstance(capture, dict):
            return cls()  # no capture spec: keep the whole output
        mode = capture.get(stream)
        if not isinstance(mode, dict) or len(mode) != 1:
            return cls(enabled=False)
        (kind, opts), = mode.items()
        opts = opts if isinstance(opts, dict) else {}
        binary = opts.get("format") in ("bin", "binary")
        if kind == "atEnd":
            if isinstance(opts.get("head"), int):
                return cls(head=opts["head"], binary=binary)
            if isinstance(opts.get("tail"), int):
                return cls(tail=opts["tail"], binary=binary)
            if isinstance(opts.get("headTail"), int):
                half = opts["headTail"] // 2
                return cls(head=half, tail=opts["headTail"] - half, binary=binary)
            return cls(binary=binary)
        if kind == "stream":
            limit = opts.get("limit")
            return cls(tail=limit if isinstance(limit, int) else None, binary=binary)
        return cls(enabled=False)

    def result(self, data: bytes) -> Any:
        """The result's ``stdout``/``stderr`` value (a serde CommandOutput) or None."""
        if not self.enabled:
            return None
        if self.head is not None or self.tail is not None:
            head, tail = self.head or 0, self.tail or 0
            if len(data) > head + tail:
                data = data[:head] + (data[len(data) - tail:] if tail else b"")
        if self.binary:
            return list(data)  # CommandOutput::Bin(Vec<u8>) is a plain serde sequence
        return data.decode("utf-8", "replace")


class _Captured:
    """One stream's captured bytes, held within its capture limits (a head and a tail) as they arrive.

    ``value()`` is what :meth:`CaptureSpec.result` would cut from the whole output, so an endless
    command holds at most about twice its limits, not all it printed.
    """

    def __init__(self, spec: CaptureSpec) -> None:
        bounded = spec.head is not None or spec.tail is not None
        self._head_limit = (spec.head or 0) if bounded else None
        self._tail_limit = (spec.tail or 0) if bounded else None
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def add(self, data: bytes) -> None:
        self._total += len(data)
        if self._head_limit is None:
            self._head += data  # no limits: keep everything
            return
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self._tail_limit:
            self._tail += data
            if len(self._tail) > 2 * self._tail_limit + 65536:
                del self._tail[:len(self._tail) - self._tail_limit]

    def value(self) -> bytes:
        if self._head_limit is None or self._tail_limit is None:
            return bytes(self._head)
        if self._total <= self._head_limit + self._tail_limit:
            return bytes(self._head + self._tail)
        tail = self._tail[len(self._tail) - self._tail_limit:] if self._tail_limit else b""
        return bytes(self._head + tail)


class ProcessRunner:
    """Runs one activity's commands as host processes, one at a time; ``stopped`` ends them."""

    def __init__(self, stopped: threading.Event) -> None:
        self._stopped = stopped
        self._child: Optional["subprocess.Popen[bytes]"] = None
        self._cpu_done = 0.0

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], capture: Any,
            on_output: Callable[[str, bytes], None]) -> Tuple[Any, Any]:
        """Run ``argv``; return the captured ``(stdout, stderr)`` results.

        Raises :class:`CommandFailed` on a non-zero exit, :class:`ExeUnitError` if it cannot start.
        """
        modes = {"stdout": CaptureSpec.parse(capture, "stdout"),
                 "stderr": CaptureSpec.parse(capture, "stderr")}
        try:
            child = subprocess.Popen(list(argv), cwd=str(cwd), env=dict(env), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        except OSError as exc:
            raise ExeUnitError(f"cannot run {argv[0]}: {exc}") from exc
        self._child = child
        if self._stopped.is_set():
            self.kill()
        captured = {name: _Captured(mode) for name, mode in modes.items()}
        try:
            self._pump(child, captured, on_output)
            # wait4 (not Popen.wait) to get this child's own rusage for golem.usage.cpu_sec. It
            # has no timeout on purpose: an ExeScript command runs as long as it runs; stop() and
            # crash() SIGKILL its process group, which ends this wait.
            _, status, rusage = os.wait4(child.pid, 0)
        finally:
            self._child = None
        child.returncode = os.waitstatus_to_exitcode(status)
        self._cpu_done += rusage.ru_utime + rusage.ru_stime
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        outputs = (modes["stdout"].result(captured["stdout"].value()),
                   modes["stderr"].result(captured["stderr"].value()))
        if child.returncode != 0:
            raise CommandFailed(f"ExeScript command exited with code {child.returncode}",
                                child.returncode, outputs)
        return outputs

    def kill(self) -> None:
        """SIGKILL the running command's process group, if any."""
        child = self._child
        if child is not None and child.returncode is None:
            try:
                # The child leads its own session: this also ends what `sh -c` spawned.
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def cpu_seconds(self) -> float:
        """CPU seconds of every command so far, the running one included."""
        return self._cpu_done + self._child_cpu()

    def _pump(self, child: "subprocess.Popen[bytes]", captured: Dict[str, "_Captured"],
              on_output: Callable[[str, bytes], None]) -> None:
        """Read both pipes until EOF, handing output to ``on_output`` as it arrives."""
        selector = selectors.DefaultSelector()
        names: Dict[int, str] = {}
        for name, stream in (("stdout", child.stdout), ("stderr", child.stderr)):
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ)
                names[stream.fileno()] = name
        try:
            while selector.get_map():
                # The timeout lets a stop() be noticed even when a grandchild outside the killed
                # process group still holds the pipes open.
                ready = selector.select(timeout=0.5)
                if not ready and self._stopped.is_set():
                    return
                for key, _ in ready:
                    stream_obj: IO[bytes] = key.fileobj  # type: ignore[assignment]
                    data = os.read(stream_obj.fileno(), 65536)
                    if not data:
                        selector.unregister(stream_obj)
                        continue
                    name = names[stream_obj.fileno()]
                    captured[name].add(data)
                    on_output(name, data)
        finally:
            selector.close()

    def _child_cpu(self) -> float:
        """CPU seconds of the running child so far (Linux /proc; 0 elsewhere)."""
        child = self._child
        if child is None:
            return 0.0
        try:
            with open(f"/proc/{child.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            return ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0
