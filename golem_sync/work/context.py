"""The WorkContext handed to ``worker(ctx)``: run commands on the provider the job signed."""
from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import attrs

from .. import signals
from ..activity import Activity
from ..cancel import CancelToken
from ..errors import GolemActivityError, GolemConfigError, GolemError, GolemTimeoutError, GolemWorkError
from ..options import RunOptions, WorkOptions
from ..vpn import Vpn
from ..storage.gftp import MAX_MEMORY_DOWNLOAD
from ..storage.paths import PathLike
from ..yagna.models import Capture, Command, Deploy, Start, Transfer
from .batch import Batch
from .commands import build_run
from .costs import CostLedger, usage_by_name
from .process import BUFFER_LIMIT, RemoteProcess
from .result import Result
from .transfers import DownloadStep, Progress, TransferEnv, TransferStep, UploadStep, json_bytes

__all__ = ["WorkContext", "ProviderInfo"]

logger = logging.getLogger("golem_sync.work")


@attrs.frozen
class ProviderInfo:
    """Who runs the work."""

    id: str
    name: str
    wallet: Optional[str] = None


class WorkContext:
    """The worker's handle on one activity.

    Threads: used from the worker's thread (the job's pool thread). The job may cancel it from
    another thread through its token; every blocking call here then raises GolemCancelledError.
    """

    _transfer_env: Optional[TransferEnv] = None  # built on the first transfer

    def __init__(self, activity: Activity, provider: ProviderInfo, token: CancelToken, options: WorkOptions,
                 *, job: Any = None) -> None:
        self._init_stream_state()  # streaming, VPN and cost state (work-stream block below)
        self._activity = activity
        self.provider = provider
        self._token = token
        self._options = options
        self.job = job

    @property
    def activity_id(self) -> str:
        return self._activity.activity_id

    @property
    def agreement_id(self) -> str:
        return self._activity.agreement_id

    @property
    def provider_id(self) -> str:
        return self.provider.id

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def run(self, command: Union[str, Sequence[str]], args: Optional[Sequence[str]] = None, *,
            timeout: Optional[float] = None, env: Optional[Mapping[str, str]] = None) -> Result:
        """Run one command: ``ctx.run("echo hi")`` (shell) or ``ctx.run("/bin/echo", ["hi"])``.

        A failing command returns a Result with ``result == "Error"`` (as golem-js) unless
        ``work.raise_on_command_error`` is set, which raises :class:`GolemWorkError` instead.
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise GolemConfigError(f"run: timeout must be a positive number of seconds, got {timeout!r}")
        return self._execute([build_run(command, args, env=env)], timeout)[0]

    def begin_batch(self) -> Batch:
        """Start a batch: ``ctx.begin_batch().run("a").run("b").end()``."""
        return Batch(self)

    def get_state(self) -> str:
        """The activity's state name (``Ready`` while the worker runs)."""
        return self._activity.state()

    # -- transfers (yagna's GSB API; no gftp binary) -------------------------------------------
    # Each helper runs one transfer command and raises GolemWorkError if it fails (the data would
    # not be trustworthy); in a batch the same steps give Error results like ``run``.

    def upload_file(self, local_path: PathLike, remote_path: str, *,
                    progress: Optional[Progress] = None, timeout: Optional[float] = None) -> Result:
        """Copy a local file to ``remote_path`` on the provider (e.g. ``/golem/input/a.bin``).

        ``progress(bytes_done, bytes_total)`` is called as chunks go out (on the socket thread).
        A missing local file raises GolemConfigError naming it, before anything is sent.
        """
        return self._run_step(UploadStep(self._transfers(), remote_path, path=local_path, progress=progress,
                                         what="upload_file"), timeout).raise_for_error()

    def upload_data(self, data: bytes, remote_path: str, *, progress: Optional[Progress] = None,
                    timeout: Optional[float] = None) -> Result:
        """Write ``data`` to ``remote_path`` on the provider."""
        return self._run_step(UploadStep(self._transfers(), remote_path, data=data, progress=progress,
                                         what="upload_data"), timeout).raise_for_error()

    def upload_json(self, value: Any, remote_path: str, *, timeout: Optional[float] = None) -> Result:
        """Write ``value`` as UTF-8 JSON to ``remote_path`` on the provider."""
        return self._run_step(UploadStep(self._transfers(), remote_path, data=json_bytes(value, "upload_json"),
                                         what="upload_json"), timeout).raise_for_error()

    def download_file(self, remote_path: str, local_path: PathLike, *,
                      progress: Optional[Progress] = None, timeout: Optional[float] = None,
                      max_size: Optional[int] = None) -> Result:
        """Copy ``remote_path`` from the provider to ``local_path`` (sha3-256 verified).

        ``local_path`` is the file to write, or an existing directory to write into under the
        remote file's base name. Its directory must exist (GolemConfigError, before anything is
        sent). The file appears only complete and verified; ``Result.data`` is its Path.
        ``progress(bytes_done, None)`` is called as chunks arrive; ``max_size`` caps the bytes accepted.
        """
        return self._run_step(DownloadStep(self._transfers(), remote_path, into="file", local=local_path,
                                           progress=progress, max_size=max_size, what="download_file"),
                              timeout).raise_for_error()

    def download_data(self, remote_path: str, *, progress: Optional[Progress] = None,
                      timeout: Optional[float] = None, max_size: Optional[int] = MAX_MEMORY_DOWNLOAD) -> bytes:
        """The bytes of ``remote_path`` on the provider (sha3-256 verified).

        ``max_size`` (default 64 MiB) caps what is held in memory: a bigger file fails with
        GolemWorkError (use ``download_file`` for big results, or pass a larger ``max_size``).
        """
        result = self._run_step(DownloadStep(self._transfers(), remote_path, into="bytes", progress=progress,
                                             max_size=max_size, what="download_data"), timeout)
        return bytes(result.raise_for_error().data)

    def download_json(self, remote_path: str, *, timeout: Optional[float] = None,
                      max_size: Optional[int] = MAX_MEMORY_DOWNLOAD) -> Any:
        """``remote_path`` on the provider, parsed as JSON (at most ``max_size`` bytes, default 64 MiB)."""
        result = self._run_step(DownloadStep(self._transfers(), remote_path, into="json", max_size=max_size,
                                             what="download_json"), timeout)
        return result.raise_for_error().data

    def transfer(self, source: str, destination: str, *, timeout: Optional[float] = None) -> Result:
        """A raw ExeScript transfer between URLs (``container:``, ``http(s)://``, ``gftp://``)."""
        if not isinstance(source, str) or not isinstance(destination, str) or not source or not destination:
            raise GolemConfigError(f"transfer: source and destination must be URLs, got {source!r}, {destination!r}")
        return self._execute([Transfer(from_=source, to=destination)], timeout)[0]

    def _transfers(self) -> TransferEnv:
        """Built on first use: the requestor's node id is the host of every gftp URL."""
        if self._transfer_env is None:
            client = self._activity.client
            self._transfer_env = TransferEnv(client=client, node_id=client.identity.me().identity,
                                             activity_id=self.activity_id, sender=self.job)
        return self._transfer_env

    def _run_step(self, step: TransferStep, timeout: Optional[float]) -> Result:
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise GolemConfigError(f"{step.what}: timeout must be a positive number of seconds, got {timeout!r}")
        return self._execute_steps([step.command], {0: step}, timeout)[0]

    def _execute_steps(self, commands: Sequence[Command], steps: Mapping[int, TransferStep],
                       timeout: Optional[float]) -> List[Result]:
        """Serve every step, run the batch through ``_execute``, close every service whatever happens."""
        opened: List[TransferStep] = []
        try:
            for index in sorted(steps):
                self._token.raise_if_cancelled()
                opened.append(steps[index])
                steps[index].open()
            ran = self._execute(commands, timeout)
            results = [steps[r.index].finish(r) if r.index in steps else r for r in ran]
        finally:
            for step in opened:
                try:
                    step.close()
                except Exception:
                    logger.exception("closing %s %s failed", step.what, step.remote_path)
        for before, after in zip(ran, results):
            if before.ok and not after.ok:  # the provider said Ok, the requestor side did not
                logger.warning("command %d on %s failed: %s", after.index, self.provider.name, after.message)
                if self._options.raise_on_command_error:
                    after.raise_for_error()
        return results

    # -- internals -----------------------------------------------------------------------------

    def _execute(self, commands: Sequence[Command], timeout: Optional[float]) -> List[Result]:
        self._ensure_fresh()
        try:
            raw = self._activity.execute(commands, self._token, timeout)
        except GolemTimeoutError:
            self._retire_activity()
            raise
        results = [Result.of(r) for r in raw]
        for result in results:
            if not result.ok:
                logger.warning("command %d on %s failed: %s", result.index, self.provider.name, result.message)
                if self._options.raise_on_command_error:
                    result.raise_for_error()
        return results

    def _prepare(self) -> None:
        """Deploy and start the activity, then run the user's setup functions."""
        try:
            results = self._activity.execute([self._deploy_command(), Start()], self._token,
                                             self._options.preparing_timeout_sec)
        except GolemActivityError as exc:
            raise GolemActivityError(f"deploying on {self.provider.name or self.provider.id} failed: {exc}") from exc
        failed = [r for r in results if str(r.result) != "Ok"]
        if failed:
            raise GolemActivityError(
                f"deploying on {self.provider.name or self.provider.id} failed: {failed[0].message}")
        signals.emit(signals.activity_ready, self.job, activity_id=self.activity_id)
        for setup in self._options.setup:
            setup(self)

    # == streaming, command timeouts, VPN, usage and cost (work-stream) ========================
    #
    # Command timeouts: a command (or batch) that exceeds its timeout raises GolemTimeoutError and
    # may still be running on the provider, where one command cannot be stopped on its own. The
    # context therefore RETIRES that activity: the next command run through this context first
    # destroys it (which stops the late command) and creates a fresh activity on the same
    # agreement, deploys and starts it and runs ``work.setup`` again. Files and processes of the
    # old activity are gone. If the provider refuses the new activity, that call raises
    # GolemActivityError (a provider failure: the job retries elsewhere if ``job.max_retries``).
    #
    # Environment variables: ``work.env`` (job level) goes into ``deploy``'s env, so every command
    # of the job sees it; ``env=`` on ``run``/``spawn``/``Batch.run`` is per command and is set by a
    # ``/bin/sh`` wrapper (ExeScript ``run`` has no env), overriding the job's values.

    def _init_stream_state(self) -> None:
        self._vpn: Optional[Vpn] = None
        self._vpn_ip: Optional[str] = None
        self._ledger = CostLedger()
        self._vector: List[str] = []
        self._stale = threading.Event()  # set (from any thread) when a command timed out
        self._processes: List[RemoteProcess] = []
        self._closed = False

    def _attach(self, options: RunOptions, *, requestor_id: str, proposal: Any,
                ledger: Optional[CostLedger] = None) -> None:
        """Job-side wiring before ``_prepare``: costs bookkeeping and the opt-in VPN."""
        if ledger is not None:
            self._ledger = ledger
        vector = proposal.properties.get("golem.com.usage.vector") if proposal is not None else None
        self._vector = [str(v) for v in vector] if isinstance(vector, list) else []
        self._ledger.agreement(self.agreement_id, job_id=getattr(self.job, "id", ""), provider_id=self.provider.id,
                               provider_name=self.provider.name,
                               pricing=proposal.pricing() if proposal is not None else None, vector=self._vector)
        self._track_activity()
        if options.vpn.enabled:
            self._vpn = Vpn.create(self._activity.client, options.vpn, requestor_id)
            self._vpn_ip = self._vpn.add_node(self.provider.id)

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
        self._check_timeout(timeout)
        if isinstance(buffer_limit, bool) or not isinstance(buffer_limit, int) or buffer_limit <= 0:
            raise GolemConfigError(f"buffer_limit must be a positive number of characters, got {buffer_limit!r}")
        self._ensure_fresh()
        limit = timeout if timeout is not None else self._activity.options.execute_timeout_sec
        run = build_run(command, args, env=env, capture=Capture.stream())
        batch_id = self._activity.send([run], self._token)
        # Open the stream at once: a real exe-unit does not replay events sent before it is open.
        stream = self._activity.stream(batch_id, read_timeout=max(60.0, limit))
        try:
            process = RemoteProcess(self._activity, batch_id, stream, self._token, limit,
                                    poll_sec=self._activity.options.result_poll_sec, on_timeout=self._stale.set,
                                    buffer_limit=buffer_limit)
        except BaseException:
            stream.close()  # yagna never ends it by itself
            raise
        if self._token.cancelled:  # landed while sending or opening the stream: the process is done
            process.close()
            self._token.raise_if_cancelled()
        self._processes = [p for p in self._processes if not p.done] + [process]
        return process

    #: ``ctx.spawn(...)`` is ``ctx.run_and_stream(...)``.
    spawn = run_and_stream

    def get_usage(self) -> Dict[str, float]:
        """The activity's latest usage by counter name, e.g. ``{"golem.usage.duration_sec": 3.0, ...}``."""
        usage = usage_by_name(self._vector, self._activity.usage())
        self._ledger.usage(self.agreement_id, self.activity_id, usage)
        return usage

    def get_cost(self) -> float:
        """The cost so far on this agreement: its linear pricing × the usage of each of its activities."""
        self.get_usage()
        return self._ledger.agreement_cost(self.agreement_id, refresh=False)

    def get_ip(self) -> str:
        """The provider's address in the job's VPN (needs ``vpn={"enabled": True}``)."""
        if self._vpn_ip is None:
            raise GolemConfigError("this job has no VPN: start it with vpn={'enabled': True}")
        return self._vpn_ip

    def get_websocket_uri(self, port: int) -> str:
        """The WebSocket URL tunnelling TCP to ``port`` on the provider inside the VPN.

        Connect with the header ``Authorization: Bearer <app key>``.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise GolemConfigError(f"port must be an integer in 1..65535, got {port!r}")
        ip = self.get_ip()
        assert self._vpn is not None  # get_ip() raised otherwise
        return self._vpn.websocket_uri(ip, port)

    @property
    def vpn(self) -> Optional[Vpn]:
        """The job's VPN, if it has one."""
        return self._vpn

    def _execute_stream(self, commands: Sequence[Command], timeout: Optional[float]) -> Iterator[Result]:
        """Send the batch NOW; the returned iterator yields results as they finish."""
        self._ensure_fresh()
        activity = self._activity
        batch_id = activity.send(commands, self._token)
        return self._results_of(activity, batch_id, len(commands), timeout)

    def _results_of(self, activity: Activity, batch_id: str, size: int,
                    timeout: Optional[float]) -> Iterator[Result]:
        collected = []
        try:
            for raw in activity.iter_results(batch_id, size, self._token, timeout):
                collected.append(raw)
                result = Result.of(raw)
                if not result.ok:
                    logger.warning("command %d on %s failed: %s", result.index, self.provider.name, result.message)
                    result.raise_for_error()
                yield result
        except GolemTimeoutError:
            self._retire_activity()
            raise
        finally:
            signals.emit(signals.batch_finished, self._sender(), activity_id=activity.activity_id,
                         batch_id=batch_id, results=collected)

    def _sender(self) -> Any:
        return self._activity.sender

    def _deploy_command(self) -> Deploy:
        net = [self._vpn.deploy_config(self._vpn_ip)] if self._vpn is not None and self._vpn_ip else None
        env = dict(getattr(self._options, "env", None) or {})
        return Deploy(env=env or None, net=net)

    def _retire_activity(self) -> None:
        if not self._token.cancelled:
            logger.info("activity %s retired after a command timeout; the next command gets a new one",
                        self.activity_id)
            self._stale.set()

    def _ensure_fresh(self) -> None:
        """Replace a retired activity before running anything on it (see the comment above)."""
        if not self._stale.is_set():
            return
        self._token.raise_if_cancelled()
        old = self._activity
        self._stop_processes()
        self._final_usage()
        old.destroy()
        self._activity = old.successor(self._token)
        self._stale.clear()
        if self.job is not None and hasattr(self.job, "activity_id"):
            self.job.activity_id = self._activity.activity_id
        self._track_activity()
        logger.info("activity %s replaced by %s", old.activity_id, self._activity.activity_id)
        self._prepare()

    def _track_activity(self) -> None:
        activity = self._activity
        vector = list(self._vector)
        self._ledger.activity(self.agreement_id, activity.activity_id,
                              lambda: usage_by_name(vector, activity.usage()))

    def _final_usage(self) -> None:
        if self._activity.destroyed:
            return
        try:
            usage = usage_by_name(self._vector, self._activity.usage())
        except GolemError as exc:
            logger.debug("final usage of %s: %s", self.activity_id, exc)
            usage = {}
        self._ledger.usage(self.agreement_id, self.activity_id, usage, final=True)

    def _stop_processes(self) -> None:
        for process in self._processes:
            process.close()
        for process in self._processes:
            process.join(5.0)
        self._processes = []

    def _close(self) -> None:
        """Attempt cleanup: close streams, record the final usage, destroy the activity, remove the VPN."""
        if self._closed:
            return
        self._closed = True
        self._stop_processes()
        self._final_usage()
        self._activity.destroy()
        if self._vpn is not None:
            self._vpn.remove()

    @staticmethod
    def _check_timeout(timeout: Optional[float]) -> None:
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or timeout <= 0):
            raise GolemConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")

    def _teardown(self) -> None:
        for teardown in self._options.teardown:
            try:
                teardown(self)
            except Exception:
                logger.exception("teardown %r failed", teardown)
