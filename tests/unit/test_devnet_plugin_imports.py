"""The pytest plugin (a ``pytest11`` entry point, so loaded by every pytest run of every project
that installs golem_sync) must import no SDK code: a fresh interpreter checks ``sys.modules``."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import List

import pytest

#: Modules the plugin (and the lazy ``golem_sync`` package) must not load.
HEAVY = ["golem_sync._network", "golem_sync._job", "golem_sync.yagna", "golem_sync._work", "requests",
         "urllib3", "blinker", "golem_sync.devnet.launcher"]


def _loaded_after(statement: str) -> List[str]:
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_pytest_plugin_loads_no_sdk_module() -> None:
    assert _loaded_after("import golem_sync.devnet.pytest_plugin") == []


def test_importing_golem_sync_itself_loads_only_the_errors() -> None:
    assert _loaded_after("import golem_sync, golem_sync.errors") == []


def test_importing_the_store_loads_no_sdk_module() -> None:
    assert _loaded_after("import golem_sync.store") == []


def test_the_lazy_package_still_exports_every_public_name() -> None:
    import golem_sync

    for name in golem_sync.__all__:
        assert getattr(golem_sync, name) is not None, name
    from golem_sync import signals

    assert golem_sync.signals is signals
    assert "GolemNetwork" in dir(golem_sync)
    with pytest.raises(AttributeError):
        golem_sync.no_such_name  # noqa: B018
