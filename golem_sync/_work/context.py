"""The WorkContext handed to ``worker(ctx)``: run commands on the provider the job signed.

The context is the worker's face; the running itself (the current activity, its replacement
after a command timeout, transfers, usage, deploy and cleanup) is its
:class:`~golem_sync._work.runner.CommandRunner`'s, which batches use too.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from .._activity import Activity
from .._cancel import CancelToken
from ..errors import GolemConfigError
from .._options import VpnOptions, WorkOptions
from .._transfer.gftp import MAX_MEMORY_DOWNLOAD
from .._transfer.paths import PathLike
from .._vpn import Vpn
from ..yagna.models import Capture, Transfer
from .batch import Batch
from .commands import build_run, check_timeout
from .costs import CostLedger
from .process import BUFFER_LIMIT, RemoteProcess
from .result import Result
from .runner import CommandRunner, ProviderInfo
from .transfers import Progress

__all__ = ["WorkContext", "ProviderInfo"]


class WorkContext:
    """The worker's handle on one activity.

    The job builds it and enters it (``with WorkContext(...) as ctx: worker(ctx)``): entering
    deploys and starts the activity (after creating the opt-in VPN) and runs ``work.setup``;
    leaving runs ``work.teardown`` unless the job was cancelled and destroys the activity. A
    worker never enters it. The keyword arguments are the job's wiring: see
    :class:`~golem_sync._work.runner.CommandRunner` (``prepared``/``keep`` for a pool's warm
    activity, which outlives the job; files a previous job left on it are still there).

    Threads: used from the worker's thread (the job's pool thread), which also enters and leaves
    it. The job may cancel it from another thread through its token; every blocking call here
    then raises GolemCancelledError.
    """

    def __init__(self, activity: Activity, provider: ProviderInfo, token: CancelToken, options: WorkOptions,
                 *, job: Any = None, vpn: Optional[VpnOptions] = None, requestor_id: str = "",
                 proposal: Any = None, ledger: Optional[CostLedger] = None, prepared: bool = False,
                 keep: bool = False, activity_setup: Sequence[Callable[[Any], Any]] = (),
                 on_activity: Optional[Callable[[Activity], None]] = None) -> None:
        self.provider = provider
        self.job = job
        self._runner = CommandRunner(activity, provider, token, options, job=job, hook_arg=self, vpn=vpn,
                                     requestor_id=requestor_id, proposal=proposal, ledger=ledger,
                                     prepared=prepared, keep=keep, activity_setup=activity_setup,
                                     on_activity=on_activity)

    @property
    def activity_id(self) -> str:
        return self._runner.activity.activity_id

    @property
    def agreement_id(self) -> str:
        return self._runner.activity.agreement_id

    @property
    def provider_id(self) -> str:
        return self.provider.id

    @property
    def provider_name(self) -> str:
        return self.provider.name

    # -- commands ----------------------------------------------------------------------------

    def run(self, command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
            timeout: Optional[float] = None, env: Optional[Mapping[str, str]] = None) -> Result:
        """Run one command: ``ctx.run("echo hi")`` (shell) or ``ctx.run("/bin/echo", ["hi"])``.

        A failing command returns a Result with ``result == "Error"`` (as golem-js) unless
        ``work.raise_on_command_error`` is set, which raises :class:`GolemWorkError` instead.
        ``timeout`` (default ``activity.execute_timeout_sec``) bounds it: past it GolemTimeoutError
        is raised and the activity is replaced on the next command (its files are gone).
        ``env`` adds environment variables for this command (on top of ``work.env``).
        """
        check_timeout(timeout, "run")
        return self._runner.execute([build_run(command, args, env=env)], timeout)[0]

    def begin_batch(self) -> Batch:
        """Start a batch: ``ctx.begin_batch().run("a").run("b").end()``."""
        return Batch(self._runner)

    def run_and_stream(self, command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
                       timeout: Optional[float] = None, env: Optional[Mapping[str, str]] = None,
                       buffer_limit: int = BUFFER_LIMIT) -> RemoteProcess:
        """Start one command and return at once; its output arrives line by line while it runs.

        ``for line in proc.stdout: ...`` / ``proc.stderr``, then ``proc.wait(timeout)`` for the exit
        code. ``timeout`` (default ``activity.execute_timeout_sec``) bounds the command: past it the
        process ends with GolemTimeoutError and the activity is replaced on the next command.
        ``buffer_limit`` (default 4 MiB) bounds the unread output kept per stream: past it the
        oldest lines are dropped and ``proc.stdout.truncated`` is set (see :class:`LineStream`).
        Raises GolemCancelledError if the job is cancelled while the command is being started.
        """
        check_timeout(timeout)
        if isinstance(buffer_limit, bool) or not isinstance(buffer_limit, int) or buffer_limit <= 0:
            raise GolemConfigError(f"buffer_limit must be a positive number of characters, got {buffer_limit!r}")
        run = build_run(command, args, env=env, capture=Capture.stream())
        return self._runner.spawn(run, timeout, buffer_limit)

    #: ``ctx.spawn(...)`` is ``ctx.run_and_stream(...)``.
    spawn = run_and_stream

    # -- transfers (yagna's GSB API; no gftp binary) -----------------------------------------
    # Each runs one transfer command and raises GolemWorkError if it fails (the data would not be
    # trustworthy); in a batch the same steps give Error results like ``run``.

    def upload_file(self, local_path: PathLike, remote_path: str, *,
                    progress: Optional[Progress] = None, timeout: Optional[float] = None) -> Result:
        """Copy a local file to ``remote_path`` on the provider (e.g. ``/golem/input/a.bin``).

        ``progress(bytes_done, bytes_total)`` is called as chunks go out (on the socket thread).
        A missing local file raises GolemConfigError naming it, before anything is sent.
        """
        step = self._runner.steps.upload_file(local_path, remote_path, progress)
        return self._runner.execute_step(step, timeout).raise_for_error()

    def upload_data(self, data: bytes, remote_path: str, *, progress: Optional[Progress] = None,
                    timeout: Optional[float] = None) -> Result:
        """Write ``data`` to ``remote_path`` on the provider."""
        step = self._runner.steps.upload_data(data, remote_path, progress)
        return self._runner.execute_step(step, timeout).raise_for_error()

    def upload_json(self, value: Any, remote_path: str, *, timeout: Optional[float] = None) -> Result:
        """Write ``value`` as UTF-8 JSON to ``remote_path`` on the provider."""
        step = self._runner.steps.upload_json(value, remote_path)
        return self._runner.execute_step(step, timeout).raise_for_error()

    def download_file(self, remote_path: str, local_path: PathLike, *,
                      progress: Optional[Progress] = None, timeout: Optional[float] = None,
                      max_size: Optional[int] = None) -> Result:
        """Copy ``remote_path`` from the provider to ``local_path`` (sha3-256 verified).

        ``local_path`` is the file to write, or an existing directory to write into under the
        remote file's base name. Its directory must exist (GolemConfigError, before anything is
        sent). The file appears only complete and verified; ``Result.data`` is its Path.
        ``progress(bytes_done, None)`` is called as chunks arrive; ``max_size`` caps the bytes accepted.
        """
        step = self._runner.steps.download_file(remote_path, local_path, progress, max_size)
        return self._runner.execute_step(step, timeout).raise_for_error()

    def download_data(self, remote_path: str, *, progress: Optional[Progress] = None,
                      timeout: Optional[float] = None, max_size: Optional[int] = MAX_MEMORY_DOWNLOAD) -> bytes:
        """The bytes of ``remote_path`` on the provider (sha3-256 verified).

        ``max_size`` (default 64 MiB) caps what is held in memory: a bigger file fails with
        GolemWorkError (use ``download_file`` for big results, or pass a larger ``max_size``).
        """
        step = self._runner.steps.download_data(remote_path, progress, max_size)
        return bytes(self._runner.execute_step(step, timeout).raise_for_error().data)

    def download_json(self, remote_path: str, *, timeout: Optional[float] = None,
                      max_size: Optional[int] = MAX_MEMORY_DOWNLOAD) -> Any:
        """``remote_path`` on the provider, parsed as JSON (at most ``max_size`` bytes, default 64 MiB)."""
        step = self._runner.steps.download_json(remote_path, max_size)
        return self._runner.execute_step(step, timeout).raise_for_error().data

    def transfer(self, source: str, destination: str, *, timeout: Optional[float] = None) -> Result:
        """A raw ExeScript transfer between URLs (``container:``, ``http(s)://``, ``gftp://``)."""
        if not isinstance(source, str) or not isinstance(destination, str) or not source or not destination:
            raise GolemConfigError(f"transfer: source and destination must be URLs, got {source!r}, {destination!r}")
        return self._runner.execute([Transfer(from_=source, to=destination)], timeout)[0]

    # -- the activity: state, usage and cost -------------------------------------------------

    def get_state(self) -> str:
        """The activity's state name (``Ready`` while the worker runs)."""
        return self._runner.state()

    def get_usage(self) -> Dict[str, float]:
        """The activity's latest usage by counter name, e.g. ``{"golem.usage.duration_sec": 3.0, ...}``."""
        return self._runner.usage()

    def get_cost(self) -> float:
        """The cost so far on this agreement: its linear pricing × the usage of each of its activities."""
        return self._runner.cost()

    # -- progress ----------------------------------------------------------------------------

    def report_progress(self, fraction: Optional[float] = None, message: Optional[str] = None,
                        **data: Any) -> None:
        """Tell everyone watching the job how far it is: ``ctx.report_progress(0.3, "rendering", frame=12)``.

        ``fraction`` is a number in [0, 1] (or None), ``message`` a short text, ``data`` any
        JSON-serialisable values (TypeError/ValueError name a bad one). It becomes ``job.progress``
        and a ``job_progress`` signal at once, and ``StoredJob.progress`` in every process sharing
        the job store (rate-limited: at most one store write per 0.2 s, the latest value always
        written). Cheap: call it in a loop.
        """
        report = getattr(self.job, "report_progress", None)
        if report is None:  # a context without a job (a pool warming an activity): check only
            from .._progress import Progress as JobProgress

            JobProgress.create(fraction, message, data)
            return
        report(fraction, message, **data)

    # -- VPN ---------------------------------------------------------------------------------

    @property
    def vpn(self) -> Optional[Vpn]:
        """The job's VPN, if it has one."""
        return self._runner.vpn

    def get_ip(self) -> str:
        """The provider's address in the job's VPN (needs ``vpn={"enabled": True}``)."""
        ip = self._runner.vpn_ip
        if ip is None:
            raise GolemConfigError("this job has no VPN: start it with vpn={'enabled': True}")
        return ip

    def get_websocket_uri(self, port: int) -> str:
        """The WebSocket URL tunnelling TCP to ``port`` on the provider inside the VPN.

        Connect with the header ``Authorization: Bearer <app key>``.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise GolemConfigError(f"port must be an integer in 1..65535, got {port!r}")
        ip = self.get_ip()
        vpn = self._runner.vpn
        assert vpn is not None  # get_ip() raised otherwise
        return vpn.websocket_uri(ip, port)

    # -- lifecycle (the job's side) ----------------------------------------------------------

    def __enter__(self) -> "WorkContext":
        """Create the opt-in VPN, deploy and start the activity, run ``work.setup`` (closed again if that fails)."""
        self._runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Teardown unless cancelled, close streams, record the final usage, destroy the activity, remove the VPN."""
        self._runner.close()
