"""File, data and JSON transfers over yagna's GSB API on the devnet (real yagna, no gftp binary).

After every test: every gftp service the test's batches named is free again in yagna (binding
its address anew succeeds, checked with plain requests) and no transfer socket thread is left.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

from golem_sync import GolemConfigError, GolemWorkError, JobState, signals
from golem_sync._work import transfers

from hygiene import YagnaProbe
from test_job_api import golem, probe, recorder  # noqa: F401  (fixtures reused, not copied)

pytestmark = pytest.mark.devnet

MB = 1024 * 1024


def gftp_names(recorder: Any) -> List[str]:
    """The gftp names in every batch golem_sync sent during the test."""
    names = []
    for commands in recorder.ids("batch-sent", "commands"):
        for command in commands:
            for url in (getattr(command, "from_", ""), getattr(command, "to", "")):
                if url.startswith("gftp://"):
                    names.append(url.rsplit("/", 1)[1])
    return names


def assert_services_unbound(probe: YagnaProbe, names: List[str]) -> None:
    """yagna binds an address once: if binding it again succeeds, golem_sync left nothing bound."""
    assert names, "the test sent no gftp transfer"
    for name in names:
        address = f"/public/gftp/{name}"
        response = probe.session.post(probe.api_url + "/gsb-api/v1/services", timeout=10,
                                      json={"listen": {"on": address, "components": ["GetMetadata"]}})
        assert response.status_code == 201, f"{address} is still bound: {response.status_code} {response.text}"
        services_id = response.json()["servicesId"]
        assert probe.session.delete(probe.api_url + f"/gsb-api/v1/services/{services_id}", timeout=10).ok


def transfer_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("golem-transfer")]


@pytest.fixture
def clean_transfers(golem, probe, recorder):  # noqa: F811
    """The network, plus the transfer hygiene checks after the test."""
    yield golem
    assert transfer_threads() == []
    assert_services_unbound(probe, gftp_names(recorder))


def test_upload_transform_download_5mb(clean_transfers, tmp_path):
    data = os.urandom(5 * MB)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    progress: List[tuple] = []

    def worker(ctx):
        ctx.upload_file(source, "/golem/input/in.bin", progress=lambda done, total: progress.append((done, total)))
        ctx.run("tr 'a-z' 'A-Z' < /golem/input/in.bin > /golem/output/out.bin").raise_for_error()
        return ctx.download_file("/golem/output/out.bin", tmp_path / "out.bin")

    job = clean_transfers.create_job()
    job.start_work(worker)
    result = job.wait_for_result(timeout=120)
    expected = data.translate(bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    assert result.ok and result.data == tmp_path / "out.bin"
    assert (tmp_path / "out.bin").read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "out.bin"]  # no partial file left
    assert progress[-1] == (len(data), len(data))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_data_and_json_round_trips(clean_transfers):
    payload = bytes(range(256)) * 1000 + b"\x00tail"
    document = {"name": "żółw", "values": [1, 2.5, None, True], "nested": {"a": []}}

    def worker(ctx):
        ctx.upload_data(payload, "/golem/input/blob")
        ctx.upload_json(document, "/golem/input/doc.json")
        ctx.upload_data(b"", "/golem/input/empty")
        return (ctx.download_data("/golem/input/blob"), ctx.download_json("/golem/input/doc.json"),
                ctx.download_data("/golem/input/empty"), ctx.run("wc -c < /golem/input/blob").stdout.strip())

    job = clean_transfers.create_job()
    job.start_work(worker)
    blob, doc, empty, size = job.wait_for_result(timeout=120)
    assert blob == payload
    assert doc == document
    assert empty == b""
    assert size == str(len(payload))


def test_batch_mixes_run_transfer_upload_and_download_steps(clean_transfers, tmp_path):
    def worker(ctx):
        return (ctx.begin_batch()
                .upload_data(b"hello\n", "/golem/input/a.txt")
                .upload_json([1, 2, 3], "/golem/input/list.json")
                .run("cat /golem/input/a.txt /golem/input/a.txt > /golem/work/b.txt")
                .transfer("container:/golem/work/b.txt", "container:/golem/output/c.txt")
                .download_data("/golem/output/c.txt")
                .download_json("/golem/input/list.json")
                .download_file("/golem/output/c.txt", tmp_path)  # a directory: the remote base name
                .end())

    job = clean_transfers.create_job()
    job.start_work(worker)
    results = job.wait_for_result(timeout=120)
    assert [r.ok for r in results] == [True] * 7
    assert results[4].data == b"hello\nhello\n"
    assert results[5].data == [1, 2, 3]
    assert results[6].data == tmp_path / "c.txt"
    assert (tmp_path / "c.txt").read_bytes() == b"hello\nhello\n"


def test_bad_local_paths_fail_before_anything_is_sent(clean_transfers, recorder, tmp_path):  # noqa: F811
    missing_file = tmp_path / "no-such-input.bin"
    missing_dir = tmp_path / "no-such-dir" / "out.bin"
    errors: List[BaseException] = []

    def worker(ctx):
        ctx.run("echo x > /golem/output/x.txt")
        sent = len(recorder.ids("batch-sent", "batch_id"))
        for call in (lambda: ctx.upload_file(missing_file, "/golem/input/x"),
                     lambda: ctx.download_file("/golem/output/x.txt", missing_dir),
                     lambda: ctx.begin_batch().run("true").upload_file(missing_file, "/golem/input/x").end()):
            try:
                call()
            except GolemConfigError as exc:
                errors.append(exc)
        assert len(recorder.ids("batch-sent", "batch_id")) == sent  # nothing reached the provider
        ctx.download_file("/golem/output/x.txt", tmp_path / "x.txt")  # the context still works
        return True

    job = clean_transfers.create_job()
    job.start_work(worker)
    assert job.wait_for_result(timeout=120) is True
    assert len(errors) == 3
    assert str(missing_file) in str(errors[0]) and "does not exist" in str(errors[0])
    assert str(missing_dir.parent) in str(errors[1]) and "does not exist" in str(errors[1])
    assert str(missing_file) in str(errors[2])
    assert not missing_dir.parent.exists()
    assert (tmp_path / "x.txt").read_text() == "x\n"


def test_failed_download_raises_and_leaves_no_partial_file(clean_transfers, tmp_path):
    def worker(ctx):
        with pytest.raises(GolemWorkError, match="no-such-file"):
            ctx.download_file("/golem/output/no-such-file", tmp_path / "out.bin")
        with pytest.raises(GolemWorkError):
            ctx.download_json("/golem/output/no-such-file")
        ctx.upload_data(b"not json", "/golem/input/bad.json")
        with pytest.raises(GolemWorkError, match="not JSON"):
            ctx.download_json("/golem/input/bad.json")
        ctx.upload_data(b"x" * 100, "/golem/input/hundred")
        with pytest.raises(GolemWorkError, match="exceed max_size of 10 bytes"):
            ctx.download_data("/golem/input/hundred", max_size=10)
        results = ctx.begin_batch().download_data("/golem/nothing-here").run("echo never").end()
        return [r.ok for r in results]

    job = clean_transfers.create_job()
    job.start_work(worker)
    assert job.wait_for_result(timeout=120) == [False]  # the failed step ended the batch
    assert list(tmp_path.iterdir()) == []


def test_cancel_during_a_transfer_closes_everything(clean_transfers, probe, recorder, tmp_path):  # noqa: F811
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(40 * MB))
    moving = threading.Event()

    def worker(ctx):
        ctx.upload_file(source, "/golem/input/big.bin", progress=lambda done, total: moving.set())

    job = clean_transfers.create_job()
    job.start_work(worker)
    assert moving.wait(60)
    # While it runs the address is taken, so the hygiene check after the test can see a leak.
    names = gftp_names(recorder)
    assert len(names) == 1
    response = probe.session.post(probe.api_url + "/gsb-api/v1/services", timeout=10,
                                  json={"listen": {"on": f"/public/gftp/{names[0]}", "components": ["X"]}})
    assert response.status_code == 400 and "Duplicated" in response.text
    started = time.monotonic()
    job.cancel(timeout=15)
    assert time.monotonic() - started < 5
    assert job.state is JobState.CANCELLED


def test_progress_signal_for_long_transfers(clean_transfers, recorder, monkeypatch):  # noqa: F811
    monkeypatch.setattr(transfers, "SIGNAL_INTERVAL", 0.0)  # every chunk of this short test is "long"
    data = os.urandom(MB)

    def worker(ctx):
        ctx.upload_data(data, "/golem/input/d.bin")
        ctx.download_data("/golem/input/d.bin")

    job = clean_transfers.create_job()
    job.start_work(worker)
    job.wait_for_result(timeout=120)
    with recorder.lock:
        events = [(s, kw) for n, s, kw in recorder.events if n == "transfer-progress"]
    assert events and all(s is job for s, _ in events)
    ups = [kw for _, kw in events if kw["direction"] == "upload"]
    downs = [kw for _, kw in events if kw["direction"] == "download"]
    assert ups[-1]["bytes_done"] == ups[-1]["bytes_total"] == len(data)
    assert downs[-1]["bytes_done"] == len(data) and downs[-1]["bytes_total"] is None
    assert {kw["remote_path"] for _, kw in events} == {"/golem/input/d.bin"}
    assert {kw["activity_id"] for _, kw in events} == {job.activity_id}


def test_a_short_transfer_sends_no_progress_signal(clean_transfers, recorder):  # noqa: F811
    job = clean_transfers.create_job()
    job.start_work(lambda ctx: ctx.upload_data(b"x" * 1000, "/golem/input/small"))
    job.wait_for_result(timeout=120)
    assert recorder.ids("transfer-progress", "bytes_done") == []
