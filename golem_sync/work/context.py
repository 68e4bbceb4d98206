"""The WorkContext handed to ``worker(ctx)``: run commands on the provider the job signed."""
from __future__ import annotations

import logging
from typing import Any, List, Mapping, Optional, Sequence, Union

import attrs

from .. import signals
from ..activity import Activity
from ..cancel import CancelToken
from ..errors import GolemActivityError, GolemConfigError, GolemWorkError
from ..options import WorkOptions
from ..yagna.models import Command, Deploy, Start
from .batch import Batch
from .commands import build_run
from .result import Result

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

    def __init__(self, activity: Activity, provider: ProviderInfo, token: CancelToken, options: WorkOptions,
                 *, job: Any = None) -> None:
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

    # -- internals -----------------------------------------------------------------------------

    def _execute(self, commands: Sequence[Command], timeout: Optional[float]) -> List[Result]:
        raw = self._activity.execute(commands, self._token, timeout)
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
            results = self._activity.execute([Deploy(), Start()], self._token, self._options.preparing_timeout_sec)
        except GolemActivityError as exc:
            raise GolemActivityError(f"deploying on {self.provider.name or self.provider.id} failed: {exc}") from exc
        failed = [r for r in results if str(r.result) != "Ok"]
        if failed:
            raise GolemActivityError(
                f"deploying on {self.provider.name or self.provider.id} failed: {failed[0].message}")
        signals.emit(signals.activity_ready, self.job, activity_id=self.activity_id)
        for setup in self._options.setup:
            setup(self)

    def _teardown(self) -> None:
        for teardown in self._options.teardown:
            try:
                teardown(self)
            except Exception:
                logger.exception("teardown %r failed", teardown)
