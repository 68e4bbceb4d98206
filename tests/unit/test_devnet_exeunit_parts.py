"""The exe-unit emulator's rooms offline: path mapper, host process runner, batch engine."""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from golem_sync.devnet.errors import ExeUnitError
from golem_sync.devnet.exeunit.batch import Batch, BatchEngine, command_state, validate_command
from golem_sync.devnet.exeunit.paths import PathMapper
from golem_sync.devnet.exeunit.process import CaptureSpec, CommandFailed, ProcessRunner


def test_path_mapper_maps_below_the_work_dir_and_refuses_escapes(tmp_path: Path) -> None:
    paths = PathMapper(tmp_path)
    root = tmp_path.resolve()
    assert paths.container_path("/golem/output/x.txt") == root / "golem/output/x.txt"
    assert paths.container_path("rel.txt") == root / "golem/work/rel.txt"
    for bad in ("/../x", "/golem/../../x", "../../../etc/passwd"):
        with pytest.raises(ExeUnitError):
            paths.container_path(bad)
    assert paths.map_arg("/golem/work") == str(root / "golem/work")
    assert paths.map_arg("cd /golem/work; ls /golem/input/a") == \
        f"cd {root}/golem/work; ls {root}/golem/input/a"
    assert paths.map_arg("/golem/workshop /a/golem/work") == "/golem/workshop /a/golem/work"


def test_capture_specs() -> None:
    assert CaptureSpec.parse(None, "stdout").result(b"abc") == "abc"
    assert CaptureSpec.parse({"stdout": {"atEnd": {"head": 2}}}, "stdout").result(b"abcdef") == "ab"
    assert CaptureSpec.parse({"stdout": {"atEnd": {"tail": 2}}}, "stdout").result(b"abcdef") == "ef"
    assert CaptureSpec.parse({"stdout": {"atEnd": {"headTail": 4}}}, "stdout").result(b"abcdef") == "abef"
    assert CaptureSpec.parse({"stdout": {"atEnd": {"format": "bin"}}}, "stdout").result(b"\x01") == [1]
    assert CaptureSpec.parse({"stdout": {"stream": {}}}, "stderr").result(b"x") is None


def test_process_runner_streams_captures_and_reports_failures(tmp_path: Path) -> None:
    runner = ProcessRunner(threading.Event())
    seen: List[Tuple[str, bytes]] = []
    env = {"PATH": "/usr/bin:/bin"}
    out = runner.run([sys.executable, "-c", "import sys; print('hi'); print('oops', file=sys.stderr)"],
                     cwd=tmp_path, env=env, capture=None, on_output=lambda s, d: seen.append((s, d)))
    assert out == ("hi\n", "oops\n")
    assert {s for s, _ in seen} == {"stdout", "stderr"}
    with pytest.raises(CommandFailed) as failed:
        runner.run(["/bin/sh", "-c", "echo partial; exit 3"], cwd=tmp_path, env=env, capture=None,
                   on_output=lambda s, d: None)
    assert failed.value.return_code == 3 and failed.value.outputs == ("partial\n", "")
    with pytest.raises(ExeUnitError):
        runner.run([str(tmp_path / "missing")], cwd=tmp_path, env=env, capture=None, on_output=lambda s, d: None)
    assert runner.cpu_seconds() >= 0.0


def test_command_validation_and_state() -> None:
    assert validate_command({"run": {"entry_point": "/bin/sh", "args": []}}) is None
    assert "unknown command" in (validate_command({"frobnicate": {}}) or "")
    assert "one-key" in (validate_command({"a": {}, "b": {}}) or "")
    assert "from and to" in (validate_command({"transfer": {"from": "x"}}) or "")
    assert command_state({"run": {"entry_point": "/bin/echo", "args": ["x"]}}) == \
        {"command": "Run", "progress": None, "params": ["/bin/echo", "x"]}


def test_batch_engine_runs_in_order_and_stops_at_the_first_failure() -> None:
    def execute(batch: Batch, index: int, command: Dict[str, Any]) -> Tuple[Any, Any]:
        (name, _), = command.items()
        if name == "terminate":
            raise ExeUnitError("boom")
        engine.emit(batch, index, {"stdout": name})
        return name, None

    engine = BatchEngine(execute, threading.Event())
    batch = engine.create("b1", [{"deploy": {}}, {"start": {}}, {"terminate": {}}, {"run": {}}])
    assert batch is not None and engine.create("b1", []) is None and engine.get("b1") is batch
    assert engine.wait_results(batch, 0, 0.0) is None  # not reached, nothing ran yet
    engine.run(batch)
    results = engine.wait_results(batch, None, 1.0)
    assert results is not None
    assert [r["result"] for r in results] == ["Ok", "Ok", "Error"]
    assert results[-1]["isBatchFinished"] and results[-1]["message"] == "boom"
    assert [r["stdout"] for r in results[:2]] == ["deploy", "start"]
    chunks = list(engine.events(batch, replay=True))
    assert chunks[-1][1] is True
    kinds = [next(iter(e["kind"])) for chunk, _ in chunks for e in chunk]
    assert kinds == ["started", "stdout", "finished"] * 2 + ["started", "finished"]
    assert engine.running_commands() == []
