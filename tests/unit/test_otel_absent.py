"""OpenTelemetry without the extra (issue 14 part 3): nothing from ``opentelemetry`` is imported and
nothing listens to the signals when a network is not instrumented, and asking for telemetry names
the extra. Runs whether or not opentelemetry is installed (a ``sys.meta_path`` blocker hides it).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from golem_sync import GolemConfigError

ROOT = Path(__file__).resolve().parents[2]


# -- without the extra -----------------------------------------------------------------------

BLOCKER = """
import sys
class _NoOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoOpenTelemetry())
"""


def test_without_the_extra_nothing_is_imported_and_asking_for_it_names_the_extra():
    script = BLOCKER + textwrap.dedent(f"""
        import time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests' / 'unit')!r}]
        import responses, re
        from fakeyagna import FakeYagna, PACKAGE, API, client
        from golem_sync import GolemNetwork, GolemConfigError, otel, signals
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.add_passthru(re.compile(rf"^(?!{{re.escape(API)}}/)"))
            FakeYagna(rsps, poll_sleep=0.02)
            with GolemNetwork(client=client(), package=PACKAGE, payment={{"invoice_wait_sec": 0.2}}) as golem:
                job = golem.create_job()
                job.start_work(lambda ctx: ctx.run("echo hi").stdout)
                assert job.wait_for_result(timeout=20) == "out\\n"
            assert not [s for s in (signals.job_created, signals.batch_sent) if s.receivers], "nothing listens"
            for attempt in (lambda: otel.instrument(golem), lambda: GolemNetwork(client=client(), telemetry=True)):
                try:
                    attempt()
                except GolemConfigError as exc:
                    assert "golem_sync[otel]" in str(exc), exc
                else:
                    raise AssertionError("no error without opentelemetry")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        assert not loaded, loaded
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("clean")


def test_a_bad_telemetry_value_is_a_config_error():
    from golem_sync import GolemNetwork
    from fakeyagna import client

    with pytest.raises(GolemConfigError, match="telemetry must be True or False"):
        GolemNetwork(client=client(), telemetry="yes")  # type: ignore[arg-type]
