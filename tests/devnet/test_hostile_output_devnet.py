"""Hostile output from providers, against the real yagna (issue 13 part 4).

100 MB of stdout (from an honest exe-unit that honours the capture limit, and from one that
ignores it), a 100 MB event line, a line that never ends, invalid UTF-8, results for command
indices that do not exist, and a result file list with path tricks. Each job runs in a process of
its own (``hostile_child.py``) so that its peak RSS is the requestor's alone (the devnet's
providers live in this process); each test ends with the yagna audit: nothing Approved, no
activity alive, the allocation released, every invoice accepted, no golem_sync thread left.

What real yagna 0.17.6 does with 100 MB of stdout (measured with the ``stdout_flood_mb`` knob):
it passes it through whole. ``GET /exec/{batch}`` answers with ``Content-Length: 100000131``
(~10 s), and yagna's own RSS grows from ~127 MB to ~1 GB for that one answer; the SSE stream
carries the 100 MB event as one ``data:`` line. yagna neither caps nor truncates: the bound has
to come from the requestor's capture request and from what it agrees to read.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from hygiene import YagnaProbe
from test_pool_devnet import devnet_of

pytestmark = pytest.mark.devnet

CHILD = Path(__file__).with_name("hostile_child.py")
ROOT = Path(__file__).resolve().parents[2]
#: Peak RSS growth allowed while one hostile job runs. Reading 100 MB of output whole costs 200 MB
#: or more (the body, then the decoded string); the caps keep it to a few times the 4 MiB cap.
RSS_BOUND_MB = 60
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def hostile_devnet():
    from golem_sync.devnet.exeunit import ExeUnitFaults
    from golem_sync.devnet.provider import ProviderFaults, ProviderSpec

    def faulty(name: str, **faults: Any) -> ProviderSpec:
        return ProviderSpec(name=name, faults=ProviderFaults(exeunit=ExeUnitFaults(**faults)))

    yield from devnet_of(ProviderSpec(name="honest"), faulty("flood", stdout_flood_mb=100),
                         faulty("bytes", invalid_utf8=True), faulty("beyond", bogus_result_index="beyond"),
                         faulty("duplicate", bogus_result_index="duplicate"))


def run_job(info: Any, provider: str, scenario: str, **cfg: Any) -> Dict[str, Any]:
    """Run ``scenario`` on ``provider`` in a child process; audit yagna afterwards; return its report."""
    config = dict(api_url=info.api_url, app_key=info.app_key, payment_network=info.payment_network,
                  subnet=info.subnet, registry_url=info.registry_url, provider=provider, scenario=scenario, **cfg)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(CHILD.parent)]))
    done = subprocess.run([sys.executable, str(CHILD), json.dumps(config)], capture_output=True, text=True,
                          timeout=240, env=env, cwd=str(ROOT))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"child failed ({done.returncode}):\n{done.stderr[-3000:]}"
    report: Dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    ids = report["ids"]
    YagnaProbe(info.api_url, info.app_key).assert_clean(
        ids["agreement_created"], {*ids["activity_created"], *ids["activity_destroyed"]}, report["allocation_id"],
        invoiced=ids["agreement_approved"])
    assert ids["agreement_approved"] and ids["activity_created"]  # the job did reach the provider
    assert report["threads"] == []
    print(f"\n{scenario} on {provider}: peak RSS growth {report['peak_growth_mb']:.1f} MB")  # figures (-s)
    return report


def test_100_mb_of_stdout_is_cut_to_its_last_4_mib_with_the_truncated_flag(hostile_devnet):
    report = run_job(hostile_devnet, "honest", "head_flood")
    assert report["value"] == {"truncated": True, "len": 4 * MIB, "tail": "aEND\n"}
    assert report["peak_growth_mb"] < RSS_BOUND_MB, report


def test_a_provider_ignoring_the_cap_fails_the_job_without_its_100_mb_being_read(hostile_devnet):
    report = run_job(hostile_devnet, "flood", "run_true")
    assert report["error"] == "GolemActivityError" and report["state"] == "rejected"
    assert "are larger than" in report["message"] and "work.max_output_bytes" in report["message"]
    assert report["peak_growth_mb"] < RSS_BOUND_MB, report


def test_a_100_mb_event_line_ends_the_streamed_command_with_a_typed_error(hostile_devnet):
    report = run_job(hostile_devnet, "flood", "spawn_true")
    assert report["error"] in ("YagnaProtocolError", "GolemActivityError"), report
    assert "SSE line longer than" in report["message"] or "larger than" in report["message"]
    assert report["peak_growth_mb"] < RSS_BOUND_MB, report


def test_a_never_ending_streamed_line_arrives_in_pieces_and_the_command_times_out(hostile_devnet):
    report = run_job(hostile_devnet, "honest", "endless_line_spawn")
    value = report["value"]
    assert value["error"] == "GolemTimeoutError" and value["pieces"] > 5, value
    assert 0 < value["longest"] <= value["max_line"] and value["split"] >= value["pieces"] - 1
    assert report["peak_growth_mb"] < RSS_BOUND_MB, report


def test_a_never_ending_line_captured_at_the_end_times_out_within_bounds(hostile_devnet):
    report = run_job(hostile_devnet, "honest", "endless_line_run")
    assert report["error"] == "GolemTimeoutError" and report["state"] == "rejected"
    assert report["peak_growth_mb"] < RSS_BOUND_MB, report


def test_invalid_utf8_from_a_command_arrives_with_replacement_characters(hostile_devnet):
    value = run_job(hostile_devnet, "honest", "invalid_utf8")["value"]
    assert value["stdout"] == "ok\ufffd\ufffd" and value["text"] == "ok\ufffd\ufffd" and not value["bytes"]
    assert value["stream"] == ["ok\ufffd\ufffd"]


def test_output_sent_as_invalid_utf8_bytes_stays_bytes_and_reads_as_text(hostile_devnet):
    value = run_job(hostile_devnet, "bytes", "invalid_utf8")["value"]
    assert value["bytes"] and bytes(value["stdout"]) == b"ok\xff\xfe\xff\xfe"
    assert value["text"] == "ok" + "\ufffd" * 4
    assert any("\ufffd" in line for line in value["stream"]), value


@pytest.mark.parametrize("provider, message", [
    ("beyond", "result for command index 6 where command 0 was due: index 6 does not exist"),
    ("duplicate", "with 2 results for 1 command (one for command index 0)"),
])
def test_results_for_commands_that_do_not_exist_fail_the_job_naming_the_index(hostile_devnet, provider, message):
    report = run_job(hostile_devnet, provider, "echo")
    assert report["error"] == "GolemActivityError" and report["state"] == "rejected"
    assert message in report["message"], report["message"]


def test_a_result_file_list_with_path_tricks_writes_only_inside_the_chosen_directory(hostile_devnet, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (out_dir / "ok.txt").symlink_to(victim)  # a symlink where the file lands: replaced, not written through
    outcome = run_job(hostile_devnet, "honest", "result_file_list", args=[str(out_dir)])["value"]
    assert outcome.pop("ok.txt") == "written ok.txt"
    for name in ("..", ".", "sub\\..\\..\\evil", "C:\\evil"):
        assert outcome.pop(name).startswith("refused: download_file: refusing file name"), name
    for name in ("../evil", "/abs/evil", "link"):  # the provider has no such file, or it leaves its work dir
        assert outcome.pop(name).startswith("failed: "), name
    assert outcome == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "victim"]
    assert [p.name for p in out_dir.iterdir()] == ["ok.txt"] and not (out_dir / "ok.txt").is_symlink()
    assert (out_dir / "ok.txt").read_text() == "fine\n" and victim.read_text() == "untouched"
