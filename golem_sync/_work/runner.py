"""The command runner: runs ExeScript on a job attempt's activity, for WorkContext and Batch alike.

One :class:`CommandRunner` per job attempt owns the activity the worker's commands run on, and
everything that lives and dies with it: the processes spawned on it, the transfer environment,
the opt-in VPN and the usage bookkeeping. :class:`~golem_sync._work.WorkContext` (the worker's
face) and :class:`~golem_sync._work.Batch` (a script being built) only call its public methods.

Lifecycle: ``CommandRunner(...)`` does no I/O. ``start()`` (or entering ``with runner:``) creates
the opt-in VPN, deploys and starts the activity and runs ``work.setup``; if any of that fails the
runner closes itself before the error propagates. ``close()`` (or leaving the ``with``) runs
``work.teardown`` unless the job was cancelled, stops the spawned processes (their streams are
closed), records the final usage, destroys the current activity and removes the VPN; it is
idempotent, isolates each step and never raises.

Final usage: the usage is read once more right before the activity is destroyed, waiting at most
``FINAL_USAGE_TIMEOUT_SEC`` (a failure or a hang is logged at debug and the last known figure
stays); the destroy then tells the cost ledger the activity's lifetime, which its duration counts
at least (the provider bills the whole time, its last report may be older).

Command timeouts: a command (or batch) that exceeds its timeout raises GolemTimeoutError and may
still be running on the provider, where one command cannot be stopped on its own. The runner
therefore RETIRES that activity: the next command first destroys it (which stops the late
command) and creates a fresh activity on the same agreement, deploys and starts it and runs
``work.setup`` again. Files and processes of the old activity are gone. If the provider refuses
the new activity, that call raises GolemActivityError (a provider failure: the job retries
elsewhere if ``job.max_retries``).

Environment variables: ``work.env`` (job level) goes into ``deploy``'s env, so every command of
the job sees it; ``env=`` on ``run``/``spawn``/``Batch.run`` is per command and is set by a
``/bin/sh`` wrapper (ExeScript ``run`` has no env), overriding the job's values.

Pool leases: a warm pool (:mod:`golem_sync._pool`) keeps activities alive between jobs. Its
jobs' runners are built with ``prepared=True`` (the activity is deployed, started and set up
already: ``start()`` runs only ``work.setup``) and ``keep=True`` (``close()`` hands a healthy
activity back instead of destroying it, and records the job's share of its cost). The pool's own
runner for an activity deploys it and runs the pool's ``setup`` (``activity_setup``), and destroys
it at the end. ``activity_setup`` also runs on every replacement activity, before ``work.setup``.

Threads: a runner is owned by the job's pool thread, which constructs, starts and closes it and
runs the worker (every method here is called there). Two things reach it from other threads: a
spawned process's watcher thread marks the activity retired when its command times out (an
Event, read by the owner before the next command), and the job's cancellation (any thread)
finishes running processes through the token. The cost ledger is shared by the network's jobs
and guards itself with a lock.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import attrs

from .. import signals
from .._activity import Activity
from .._cancel import CancelToken
from ..errors import GolemActivityError, GolemError, GolemTimeoutError, YagnaLostError
from .._options import VpnOptions, WorkOptions
from .._vpn import Vpn
from ..yagna.models import Command, Deploy, Run, Start
from .commands import check_timeout
from .costs import CostLedger, usage_by_name
from .process import BUFFER_LIMIT, RemoteProcess
from .result import Result, capped_commands, results_body_limit
from .transfers import StepBuilder, TransferEnv, TransferStep

__all__ = ["CommandRunner", "ProviderInfo"]

#: A job on a kept (pool) activity reads its usage when it gives it back only if it held it this long.
SHARE_READ_MIN_SEC = 1.0

#: The longest the cleanup waits for the last usage read before an activity is destroyed or handed back.
FINAL_USAGE_TIMEOUT_SEC = 2.0

logger = logging.getLogger("golem_sync.work")


@attrs.frozen
class ProviderInfo:
    """Who runs the work."""

    id: str
    name: str
    wallet: Optional[str] = None


class CommandRunner:
    """Runs commands on the current activity of one agreement, and owns that activity.

    ``hook_arg`` is what ``work.setup`` and ``work.teardown`` functions are called with (the
    WorkContext). ``vpn``/``requestor_id`` ask for the opt-in VPN; ``proposal`` (the signed one)
    gives the usage vector and pricing for ``ledger``, the network's cost bookkeeping (a private
    ledger by default).
    """

    def __init__(self, activity: Activity, provider: ProviderInfo, token: CancelToken, options: WorkOptions, *,
                 job: Any = None, hook_arg: Any = None, vpn: Optional[VpnOptions] = None,
                 requestor_id: str = "", proposal: Any = None, ledger: Optional[CostLedger] = None,
                 prepared: bool = False, keep: bool = False, activity_setup: Sequence[Callable[[Any], Any]] = (),
                 on_activity: Optional[Callable[[Activity], None]] = None) -> None:
        self.provider = provider
        self.token = token
        self.options = options
        self.job = job
        #: Builds transfer steps served by this runner's transfer environment.
        self.steps = StepBuilder(self.transfer_env)
        self._activity = activity
        self._hook_arg = hook_arg
        self._vpn_options = vpn
        self._requestor_id = requestor_id
        self._vpn: Optional[Vpn] = None
        self._vpn_ip: Optional[str] = None
        self._transfer_env: Optional[TransferEnv] = None  # built on the first transfer
        self._stale = threading.Event()  # set (from any thread) when a command timed out
        self._processes: List[RemoteProcess] = []
        self._closed = False
        self._prepared = prepared
        self._keep = keep
        self._activity_setup = tuple(activity_setup)
        self._on_activity = on_activity
        self._ledger = ledger if ledger is not None else CostLedger()
        vector = proposal.properties.get("golem.com.usage.vector") if proposal is not None else None
        self._vector = [str(v) for v in vector] if isinstance(vector, list) else []
        self._ledger.agreement(activity.agreement_id, job_id=getattr(job, "id", ""), provider_id=provider.id,
                               provider_name=provider.name,
                               pricing=proposal.pricing() if proposal is not None else None, vector=self._vector)
        self._track_activity()

    # -- lifecycle (the owner's thread) ------------------------------------------------------

    def start(self) -> None:
        """Create the opt-in VPN, deploy and start the activity, run ``work.setup``.

        If any of it fails, the runner is closed (see :meth:`close`) before the error propagates.
        """
        try:
            if self._prepared:  # deployed and set up by its owner (a pool lease)
                if self._keep:
                    self._begin_share(whole=False)
                for setup in self.options.setup:
                    setup(self._hook_arg)
                return
            if self._vpn_options is not None and self._vpn_options.enabled:
                self._vpn = Vpn.create(self._activity.client, self._vpn_options, self._requestor_id)
                self._vpn_ip = self._vpn.add_node(self.provider.id)
            self._prepare()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Teardown (skipped once the job is cancelled), stop processes, record the final usage,
        destroy the activity, remove the VPN. Idempotent; each step is isolated; never raises.

        With ``keep``, an activity not retired by a command timeout is left alive for its owner
        (its usage so far is recorded, and the job's share of it)."""
        if self._closed:
            return
        self._closed = True
        if not self.token.cancelled:
            for teardown in self.options.teardown:
                _isolated(f"teardown {teardown!r}", teardown, self._hook_arg)
        _isolated("stopping the spawned processes", self._stop_processes)
        handing_back = self._keep and not self._stale.is_set()
        _isolated("recording the final usage", self._final_usage, not handing_back)
        if not handing_back:
            _isolated("destroying the activity", self._destroy_activity)
        if self._vpn is not None:
            _isolated("removing the VPN", self._vpn.remove)

    def __enter__(self) -> "CommandRunner":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the commands run on ------------------------------------------------------------

    @property
    def activity(self) -> Activity:
        """The current activity (a new one after a command timeout, see the module doc)."""
        return self._activity

    @property
    def retired(self) -> bool:
        """True when the current activity was retired by a command timeout and not yet replaced."""
        return self._stale.is_set()

    @property
    def vpn(self) -> Optional[Vpn]:
        """The job's VPN, if it has one."""
        return self._vpn

    @property
    def vpn_ip(self) -> Optional[str]:
        """The provider's address in the VPN, if there is one."""
        return self._vpn_ip

    def state(self) -> str:
        """The current activity's state name."""
        return self._activity.state()

    # -- running commands --------------------------------------------------------------------

    def execute(self, commands: Sequence[Command], timeout: Optional[float]) -> List[Result]:
        """Run a batch and return every result; a failing command is logged (and raised with
        ``work.raise_on_command_error``); a timeout retires the activity and raises."""
        self._ensure_fresh()
        cap = self.options.max_output_bytes
        commands = capped_commands(commands, cap)
        try:
            raw = self._activity.execute(commands, self.token, timeout,
                                         max_body=results_body_limit(len(commands), cap))
        except GolemTimeoutError:
            self._retire_activity()
            raise
        results = [Result.of(r, max_output=cap) for r in raw]
        for result in results:
            if not result.ok:
                self._command_failed(result)
        return results

    def execute_steps(self, commands: Sequence[Command], steps: Mapping[int, TransferStep],
                      timeout: Optional[float]) -> List[Result]:
        """Serve every transfer step (by command index), run the batch, close every service whatever happens."""
        opened: List[TransferStep] = []
        started: Dict[int, TransferStep] = {}
        finished: Dict[int, Result] = {}
        failure: Optional[BaseException] = None
        try:
            for index in sorted(steps):
                self.token.raise_if_cancelled()
                opened.append(steps[index])
                steps[index].open()
                started[index] = steps[index]
                steps[index].announce_start()
            ran = self.execute(commands, timeout)
            results = [steps[r.index].finish(r) if r.index in steps else r for r in ran]
            finished = {r.index: r for r in results if r.index in steps}
        except BaseException as exc:
            failure = exc
            raise
        finally:
            for step in opened:
                try:
                    step.close()
                except Exception:
                    logger.exception("closing %s %s failed", step.what, step.remote_path)
            for index, step in started.items():
                step.announce_end(finished.get(index), failure)
        for before, after in zip(ran, results):
            if before.ok and not after.ok:  # the provider said Ok, the requestor side did not
                self._command_failed(after)
        return results

    def execute_step(self, step: TransferStep, timeout: Optional[float]) -> Result:
        """Run one transfer step on its own."""
        check_timeout(timeout, step.what)
        return self.execute_steps([step.command], {0: step}, timeout)[0]

    def execute_stream(self, commands: Sequence[Command], timeout: Optional[float]) -> Iterator[Result]:
        """Send the batch NOW; the returned iterator yields results as they finish.

        The first failing command raises GolemWorkError; a timeout retires the activity and raises.
        """
        self._ensure_fresh()
        activity = self._activity
        commands = capped_commands(commands, self.options.max_output_bytes)
        batch_id = activity.send(commands, self.token)
        return self._results_of(activity, batch_id, len(commands), timeout)

    def spawn(self, run: Run, timeout: Optional[float], buffer_limit: int = BUFFER_LIMIT) -> RemoteProcess:
        """Start one streaming ``run`` command and return its process at once.

        The event stream is closed on every path that does not hand the process out; a cancel
        that lands while the command is being started raises GolemCancelledError.
        """
        self._ensure_fresh()
        activity = self._activity
        limit = timeout if timeout is not None else activity.options.execute_timeout_sec
        cap = self.options.max_output_bytes
        batch_id = activity.send(capped_commands([run], cap), self.token)
        # Open the stream at once: a real exe-unit does not replay events sent before it is open.
        stream = activity.stream(batch_id, read_timeout=max(60.0, limit))
        try:
            process = RemoteProcess(activity, batch_id, stream, self.token, limit,
                                    poll_sec=activity.options.result_poll_sec, on_timeout=self._stale.set,
                                    buffer_limit=buffer_limit, max_body=results_body_limit(1, cap))
        except BaseException:
            stream.close()  # yagna never ends it by itself
            raise
        if self.token.cancelled:  # landed while sending or opening the stream: the process is done
            process.close()
            self.token.raise_if_cancelled()
        self._processes = [p for p in self._processes if not p.done] + [process]
        return process

    # -- transfers ---------------------------------------------------------------------------

    def transfer_env(self) -> TransferEnv:
        """What transfer steps need; built on first use (the requestor's node id is the host of every gftp URL)."""
        if self._transfer_env is None:
            client = self._activity.client
            self._transfer_env = TransferEnv(client=client, node_id=client.identity.me().identity,
                                             activity_id=self._activity.activity_id, sender=self.job)
        return self._transfer_env

    # -- usage and cost ----------------------------------------------------------------------

    def usage(self) -> Dict[str, float]:
        """The current activity's latest usage by counter name (recorded in the ledger)."""
        usage = usage_by_name(self._vector, self._activity.usage())
        self._ledger.usage(self._activity.agreement_id, self._activity.activity_id, usage)
        return usage

    def cost(self) -> float:
        """The agreement's cost so far: its linear pricing × the usage of each of its activities."""
        self.usage()
        return self._ledger.agreement_cost(self._activity.agreement_id, refresh=False)

    # -- internals ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Deploy and start the current activity, then run the user's setup functions."""
        who = self.provider.name or self.provider.id
        try:
            results = self._activity.execute([self._deploy_command(), Start()], self.token,
                                             self.options.preparing_timeout_sec,
                                             max_body=results_body_limit(2, self.options.max_output_bytes))
        except GolemActivityError as exc:
            lost = isinstance(exc, YagnaLostError)  # keep the type: yagna went away, not the provider
            raise (YagnaLostError if lost else GolemActivityError)(f"deploying on {who} failed: {exc}") from exc
        failed = [r for r in results if str(r.result) != "Ok"]
        if failed:
            raise GolemActivityError(f"deploying on {who} failed: {failed[0].message}")
        signals.emit(signals.activity_ready, self.job, activity_id=self._activity.activity_id)
        for setup in (*self._activity_setup, *self.options.setup):
            setup(self._hook_arg)

    def _deploy_command(self) -> Deploy:
        net = [self._vpn.deploy_config(self._vpn_ip)] if self._vpn is not None and self._vpn_ip else None
        env = dict(getattr(self.options, "env", None) or {})
        return Deploy(env=env or None, net=net)

    def _results_of(self, activity: Activity, batch_id: str, size: int,
                    timeout: Optional[float]) -> Iterator[Result]:
        collected = []
        cap = self.options.max_output_bytes
        try:
            for raw in activity.iter_results(batch_id, size, self.token, timeout,
                                             max_body=results_body_limit(size, cap)):
                collected.append(raw)
                result = Result.of(raw, max_output=cap)
                if not result.ok:
                    self._log_failed(result)
                    result.raise_for_error()
                yield result
        except GeneratorExit:  # the caller stopped reading: batch_finished says what arrived
            raise
        except BaseException as exc:
            if not (collected and str(collected[-1].result) != "Ok"):  # a failed command is a result
                signals.emit(signals.batch_failed, activity.sender, activity_id=activity.activity_id,
                             batch_id=batch_id, error=exc)
            if isinstance(exc, GolemTimeoutError):
                self._retire_activity()
            raise
        finally:
            signals.emit(signals.batch_finished, activity.sender, activity_id=activity.activity_id,
                         batch_id=batch_id, results=collected)

    def _command_failed(self, result: Result) -> None:
        self._log_failed(result)
        if self.options.raise_on_command_error:
            result.raise_for_error()

    def _log_failed(self, result: Result) -> None:
        logger.warning("command %d on %s failed: %s", result.index, self.provider.name, result.message)

    def _retire_activity(self) -> None:
        if not self.token.cancelled:
            logger.info("activity %s retired after a command timeout; the next command gets a new one",
                        self._activity.activity_id)
            self._stale.set()

    def _ensure_fresh(self) -> None:
        """Replace a retired activity before running anything on it (see the module doc)."""
        if not self._stale.is_set():
            return
        self.token.raise_if_cancelled()
        old = self._activity
        self._stop_processes()
        self._final_usage(True)
        self._destroy_activity()
        self._activity = old.successor(self.token)
        self._stale.clear()
        if self._on_activity is not None:
            self._on_activity(self._activity)
        self._track_activity()
        if self._keep:
            self._begin_share(whole=True)  # a new activity for this job: all of it is the job's
        logger.info("activity %s replaced by %s", old.activity_id, self._activity.activity_id)
        self._prepare()

    def _track_activity(self) -> None:
        activity = self._activity
        vector = list(self._vector)
        self._ledger.activity(self._activity.agreement_id, activity.activity_id,
                              lambda: usage_by_name(vector, activity.usage()))

    def _final_usage(self, final: bool) -> None:
        """Record the activity's usage as the runner leaves it (``final``: it is about to go).

        A kept activity held only briefly is not read (one REST call that would double a short
        pool job's time): the job's share then counts the time it held the activity.
        """
        job_id = getattr(self.job, "id", "")
        brief = (not final and self._keep and job_id
                 and self._ledger.share_held(job_id, self._activity.activity_id) < SHARE_READ_MIN_SEC)
        if self._activity.destroyed or brief:
            self._end_share({})
            return
        try:
            usage = usage_by_name(self._vector, self._activity.final_usage(FINAL_USAGE_TIMEOUT_SEC))
        except Exception as exc:  # never fails the cleanup: the last known figure stays
            logger.debug("final usage of %s not read: %s", self._activity.activity_id, exc)
            usage = {}
        self._ledger.usage(self._activity.agreement_id, self._activity.activity_id, usage, final=final)
        self._end_share(usage)

    def _destroy_activity(self) -> None:
        """Destroy the current activity and tell the ledger it ended (its lifetime bounds its duration)."""
        activity = self._activity
        try:
            activity.destroy()
        finally:
            self._ledger.activity_ended(activity.agreement_id, activity.activity_id)

    def _begin_share(self, *, whole: bool) -> None:
        """Start counting the job's share of a kept activity (from its last recorded usage, or all of it)."""
        job_id = getattr(self.job, "id", "")
        if job_id:
            self._ledger.share_begin(job_id, self._activity.agreement_id, self._activity.activity_id, whole=whole)

    def _end_share(self, usage: Mapping[str, float]) -> None:
        job_id = getattr(self.job, "id", "")
        if self._keep and job_id:
            self._ledger.share_end(job_id, self._activity.activity_id, usage)

    def _stop_processes(self) -> None:
        for process in self._processes:
            process.close()
        for process in self._processes:
            process.join(5.0)
        self._processes = []


def _isolated(what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run one closing step; log what it raises and go on (closing must reach its end)."""
    try:
        fn(*args)
    except Exception:
        logger.exception("%s failed", what)
