"""Transfers without yagna: local path rules, the gftp handlers, hash checks, cleanup guarantees."""
from __future__ import annotations

import hashlib
import inspect
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import attrs
import pytest

from golem_sync import GolemCancelledError, GolemConfigError, GolemWorkError, YagnaProtocolError, signals
from golem_sync import _flex as flex
from golem_sync._cancel import CancelToken
from golem_sync._options import WorkOptions
from golem_sync._transfer import paths
from golem_sync._transfer.gftp import MAX_CHUNK, BytesSource, FileSource, Publication, Receipt
from golem_sync._transfer.service import GsbService, ServiceFailure
from golem_sync._work import Batch, ProviderInfo, WorkContext, transfers
from golem_sync._work.runner import CommandRunner
from golem_sync._work.transfers import DownloadStep, TransferEnv, TransferStep, UploadStep
from golem_sync.yagna.models import Transfer

NOT_CONNECTED = SimpleNamespace()  # handlers are tested without opening the service


def sha3(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


# -- local paths -------------------------------------------------------------------------------

def test_upload_of_a_missing_or_non_file_path_names_it(tmp_path):
    with pytest.raises(GolemConfigError, match=f"'{tmp_path / 'nope.bin'}' does not exist"):
        paths.source_file(tmp_path / "nope.bin", "upload_file")
    with pytest.raises(GolemConfigError, match="is not a regular file"):
        paths.source_file(tmp_path, "upload_file")
    (tmp_path / "a").write_bytes(b"x")
    assert paths.source_file(str(tmp_path / "a"), "upload_file") == tmp_path / "a"


def test_download_target_is_the_given_file_or_the_remote_base_name_inside_a_directory(tmp_path):
    assert paths.download_target(tmp_path / "out.bin", "/golem/output/r.bin", "d") == tmp_path / "out.bin"
    assert paths.download_target(tmp_path, "/golem/output/r.bin", "d") == tmp_path / "r.bin"
    with pytest.raises(GolemConfigError, match=f"local directory '{tmp_path / 'missing'}' does not exist"):
        paths.download_target(tmp_path / "missing" / "out.bin", "/x", "d")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("remote", ["/golem/output/..", "/golem/output/.", "..", "/", "", "/golem/a\\..\\b",
                                    "/golem/x\0y"])
def test_a_remote_name_can_never_leave_the_chosen_directory(tmp_path, remote):
    with pytest.raises(GolemConfigError, match="refusing file name"):
        paths.download_target(tmp_path, remote, "download_file")


@pytest.mark.parametrize("name", ["../x", "a/b", "/etc/passwd", "..", ".", "", "a\\b"])
def test_safe_name_accepts_only_plain_names(name):
    with pytest.raises(GolemConfigError):
        paths.safe_name(name, "d")
    assert paths.safe_name("..hidden", "d") == "..hidden"


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    inside_dir = tmp_path / "dir"
    inside_dir.mkdir()
    (inside_dir / "r.bin").symlink_to(outside)
    target = paths.download_target(inside_dir, "/golem/output/r.bin", "d")
    receipt = Receipt(NOT_CONNECTED, "n", part_path=paths.part_path(target, "t"))  # type: ignore[arg-type]
    receipt.handle("UploadChunk", {"chunk": {"offset": 0, "content": b"new"}})
    receipt.handle("UploadFinished", {"hash": sha3(b"new")})
    receipt.close()
    receipt.commit(target)
    assert outside.read_text() == "keep"
    assert target.read_bytes() == b"new" and not target.is_symlink()


# -- serving an upload (GetMetadata / GetChunk) --------------------------------------------------

def test_publication_serves_metadata_and_chunks_and_reports_progress(tmp_path):
    data = os.urandom(100_000)
    (tmp_path / "f").write_bytes(data)
    seen: List[tuple] = []
    pub = Publication(NOT_CONNECTED, "n", FileSource(tmp_path / "f"), lambda d, t: seen.append((d, t)))  # type: ignore[arg-type]
    try:
        assert pub.handle("GetMetadata", None) == {"fileSize": len(data)}
        out = b""
        while len(out) < len(data):
            chunk = pub.handle("GetChunk", {"offset": len(out), "size": 40960})
            assert chunk["offset"] == len(out)
            out += chunk["content"]
        assert out == data
        assert seen[-1] == (len(data), len(data)) and len(seen) == 3
        # A chunk larger than a WebSocket frame allows is cut short, never sent whole.
        assert len(pub.handle("GetChunk", {"offset": 0, "size": 1 << 20})["content"]) == MAX_CHUNK
        for bad in ({"offset": -1, "size": 10}, {"offset": 0}, {"offset": len(data) + 1, "size": 1},
                    {"offset": True, "size": 1}, None):
            with pytest.raises(ServiceFailure):
                pub.handle("GetChunk", bad)
        with pytest.raises(ServiceFailure, match="unknown gftp message"):
            pub.handle("UploadChunk", {})
    finally:
        pub.source.close()


def test_bytes_source_serves_the_end_of_the_data():
    source = BytesSource(b"abcdef")
    assert source.size == 6 and source.read(4, 100) == b"ef" and source.read(6, 10) == b""


# -- receiving a download (UploadChunk / UploadFinished) ----------------------------------------

def chunks_of(data: bytes, size: int) -> List[Dict[str, Any]]:
    return [{"chunk": {"offset": o, "content": data[o:o + size]}} for o in range(0, len(data), size)]


@pytest.mark.parametrize("order", ["in-order", "reversed"])
@pytest.mark.parametrize("into_file", [False, True])
def test_receipt_verifies_the_sha3_hash_in_any_chunk_order(tmp_path, order, into_file):
    data = os.urandom(150_000)
    parts = chunks_of(data, 40960)
    if order == "reversed":
        parts.reverse()
    part = tmp_path / ".out.part" if into_file else None
    progress: List[tuple] = []
    receipt = Receipt(NOT_CONNECTED, "n", part_path=part, progress=lambda d, t: progress.append((d, t)))  # type: ignore[arg-type]
    for p in parts:
        assert receipt.handle("UploadChunk", p) is None
    assert receipt.handle("UploadFinished", {"hash": sha3(data).upper()}) is None
    assert receipt.verified_hash == sha3(data)
    assert progress[-1] == (len(data), None)
    receipt.close()
    if into_file:
        receipt.commit(tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == data and not part.exists()  # type: ignore[union-attr]
    else:
        assert receipt.data() == data


def test_receipt_refuses_a_wrong_or_missing_hash_and_late_chunks(tmp_path):
    receipt = Receipt(NOT_CONNECTED, "n", part_path=tmp_path / ".p")  # type: ignore[arg-type]
    receipt.handle("UploadChunk", {"chunk": {"offset": 0, "content": b"abc"}})
    with pytest.raises(ServiceFailure, match="sha3-256 mismatch"):
        receipt.handle("UploadFinished", {"hash": sha3(b"abd")})
    with pytest.raises(ServiceFailure, match="without a hash"):
        receipt.handle("UploadFinished", {})
    assert receipt.verified_hash is None
    with pytest.raises(GolemWorkError, match="nothing verified"):
        receipt.commit(tmp_path / "out")
    receipt.discard()
    assert list(tmp_path.iterdir()) == []
    done = Receipt(NOT_CONNECTED, "n")  # type: ignore[arg-type]
    done.handle("UploadFinished", {"hash": sha3(b"")})
    with pytest.raises(ServiceFailure, match="after UploadFinished"):
        done.handle("UploadChunk", {"chunk": {"offset": 0, "content": b"x"}})


def test_receipt_checks_offsets_sizes_and_accepts_integer_vectors():
    receipt = Receipt(NOT_CONNECTED, "n", max_size=10)  # type: ignore[arg-type]
    for bad in ({"chunk": {"offset": -5, "content": b"x"}}, {"chunk": {"offset": 0, "content": "text"}},
                {"chunk": {"offset": 0, "content": [300]}}, {"chunk": None}, None):
        with pytest.raises(ServiceFailure):
            receipt.handle("UploadChunk", bad)
    with pytest.raises(GolemWorkError, match="max_size of 10 bytes"):
        receipt.handle("UploadChunk", {"chunk": {"offset": 8, "content": b"xyz"}})
    receipt.handle("UploadChunk", {"chunk": {"offset": 0, "content": [104, 105]}})  # Vec<u8> without serde_bytes
    receipt.handle("UploadFinished", {"hash": sha3(b"hi")})
    assert receipt.data() == b"hi"


def test_a_download_never_writes_through_an_existing_part_file(tmp_path):
    (tmp_path / ".p").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        Receipt(NOT_CONNECTED, "n", part_path=tmp_path / ".p")  # type: ignore[arg-type]
    assert (tmp_path / ".p").read_bytes() == b"someone else's"


# -- the flexbuffers codec ----------------------------------------------------------------------

def test_flex_round_trips_gsb_api_messages():
    message = {"id": "7", "payload": {"offset": 40960, "content": b"\x00\xff" * 10}}
    decoded = flex.loads(flex.dumps(message))
    assert decoded["id"] == "7" and decoded["payload"]["offset"] == 40960
    assert flex.as_bytes(decoded["payload"]["content"]) == b"\x00\xff" * 10
    assert flex.loads(flex.dumps({"id": "1", "payload": None})) == {"id": "1", "payload": None}
    with pytest.raises(YagnaProtocolError):
        flex.loads(b"")


# -- the service: nothing stays bound when opening fails -----------------------------------------

class FakeGsb:
    def __init__(self, fail_bind: bool = False) -> None:
        self.fail_bind = fail_bind
        self.bound: List[str] = []
        self.unbound: List[str] = []

    def bind_services(self, address: str, components: Any) -> str:
        if self.fail_bind:
            from golem_sync import YagnaRequestError
            raise YagnaRequestError("Duplicated service address prefix")
        self.bound.append(address)
        return "c2VydmljZQ"

    def unbind_services(self, services_id: str) -> None:
        self.unbound.append(services_id)


def fake_client(port: int, gsb: FakeGsb) -> Any:
    base = f"http://127.0.0.1:{port}/gsb-api/v1"
    return SimpleNamespace(gsb=gsb, config=SimpleNamespace(app_key="secret-key"),
                           transport=SimpleNamespace(url=lambda api, path: base + path))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


def test_a_failed_websocket_connect_unbinds_and_never_shows_the_key():
    gsb = FakeGsb()
    service = GsbService(fake_client(closed_port(), gsb), "/public/gftp/x", ["GetChunk"], lambda c, p: None,
                         connect_timeout=2)
    with pytest.raises(GolemWorkError, match="could not open the GSB API WebSocket") as info:
        service.open()
    assert "secret-key" not in str(info.value)
    assert gsb.unbound == ["c2VydmljZQ"] and not service.alive
    service.close()  # idempotent
    assert gsb.unbound == ["c2VydmljZQ"]


def test_a_failed_bind_is_a_work_error_naming_the_address():
    service = GsbService(fake_client(closed_port(), FakeGsb(fail_bind=True)), "/public/gftp/x", ["GetChunk"],
                         lambda c, p: None)
    with pytest.raises(GolemWorkError, match="/public/gftp/x.*Duplicated"):
        service.open()


# -- steps inside a WorkContext: every opened step is closed whatever happens --------------------

class FakeStep(TransferStep):
    def __init__(self, env: TransferEnv, log: List[str], tag: str, fail_open: bool = False) -> None:
        super().__init__(env, f"/golem/{tag}", None, "fake")
        self.command = Transfer(from_=self.url, to=f"container:/golem/{tag}")
        self.log, self.tag, self.fail_open = log, tag, fail_open

    def open(self) -> None:
        self.log.append(f"open {self.tag}")
        if self.fail_open:
            raise GolemConfigError(f"cannot open {self.tag}")

    def finish(self, ran: Any) -> Any:
        return attrs.evolve(ran, data=self.tag)

    def close(self) -> None:
        self.log.append(f"close {self.tag}")

    def _service_error(self) -> Optional[BaseException]:
        return None


class FakeActivity:
    activity_id = "act"
    agreement_id = "agr"

    def __init__(self, error: Optional[BaseException] = None) -> None:
        self.error = error
        self.executed: List[Any] = []
        # the requestor's node id, asked once for the transfer environment
        self.client = SimpleNamespace(identity=SimpleNamespace(me=lambda: SimpleNamespace(identity="0xABC")))

    def execute(self, commands: Any, token: Any, timeout: Any, **kw: Any) -> Any:
        self.executed.append(commands)
        if self.error is not None:
            raise self.error
        return [SimpleNamespace(index=i, result="Ok", stdout=None, stderr=None, message=None, event_date=None,
                                is_batch_finished=i == len(commands) - 1) for i in range(len(commands))]


def runner_on(activity: FakeActivity) -> CommandRunner:
    return CommandRunner(activity, ProviderInfo("p", "prov"), CancelToken(), WorkOptions())  # type: ignore[arg-type]


def test_steps_are_closed_after_success_failure_and_cancellation():
    for error in (None, GolemCancelledError("cancelled"), GolemWorkError("boom")):
        log: List[str] = []
        activity = FakeActivity(error)
        runner = runner_on(activity)
        env = runner.transfer_env()
        batch = Batch(runner)
        batch._add_step(FakeStep(env, log, "a"))
        batch.run("true")
        batch._add_step(FakeStep(env, log, "b"))
        if error is None:
            results = batch.end()
            assert [r.data for r in results] == ["a", None, "b"]
        else:
            with pytest.raises(type(error)):
                batch.end()
        assert log == ["open a", "open b", "close a", "close b"]
        assert activity.executed[0][0].from_.startswith("gftp://0xabc/")


def test_a_step_that_cannot_open_stops_the_batch_before_anything_is_sent():
    log: List[str] = []
    activity = FakeActivity()
    runner = runner_on(activity)
    env = runner.transfer_env()
    batch = Batch(runner)
    batch._add_step(FakeStep(env, log, "a"))
    batch._add_step(FakeStep(env, log, "b", fail_open=True))
    batch._add_step(FakeStep(env, log, "c"))
    with pytest.raises(GolemConfigError, match="cannot open b"):
        batch.end()
    assert activity.executed == []
    assert log == ["open a", "open b", "close a", "close b"]


def test_building_steps_checks_arguments_before_anything_runs(tmp_path):
    env = TransferEnv(client=None, node_id="0xabc", activity_id="act", sender=None)  # type: ignore[arg-type]
    with pytest.raises(GolemConfigError, match="remote path"):
        UploadStep(env, "", data=b"x")
    with pytest.raises(GolemConfigError, match="not both"):
        UploadStep(env, "/a", data=b"x", path=tmp_path)
    with pytest.raises(GolemConfigError, match="data must be bytes"):
        UploadStep(env, "/a", data="text")  # type: ignore[arg-type]
    with pytest.raises(GolemConfigError, match="progress must be callable"):
        UploadStep(env, "/a", data=b"x", progress=5)  # type: ignore[arg-type]
    with pytest.raises(GolemConfigError, match="max_size"):
        DownloadStep(env, "/a", into="bytes", max_size=-1)
    step = DownloadStep(env, "/golem/output/r.bin", into="file", local=tmp_path)
    assert step.target == tmp_path / "r.bin"
    assert step.command.to_json() == {"transfer": {"from": "container:/golem/output/r.bin", "to": step.url}}
    assert step.url.startswith("gftp://0xabc/") and len(step.url.rsplit("/", 1)[1]) == 32


def test_progress_callbacks_are_isolated_and_signals_throttled(monkeypatch):
    env = TransferEnv(client=None, node_id="0xabc", activity_id="act", sender="job")  # type: ignore[arg-type]
    sent: List[Dict[str, Any]] = []

    def receiver(sender: Any, **kw: Any) -> None:
        sent.append(kw)

    signals.transfer_progress.connect(receiver)
    try:
        def broken(done: int, total: Optional[int]) -> None:
            raise RuntimeError("user bug")

        reporter = transfers._Reporter(env, "upload", "/r", broken)
        reporter(10, 100)  # raises nothing, and too early for a signal
        assert sent == []
        reporter.end()
        assert sent == []  # a short transfer sends no signal at all
        monkeypatch.setattr(transfers, "SIGNAL_INTERVAL", 0.0)
        reporter(50, 100)
        reporter.end()
        assert [s["bytes_done"] for s in sent] == [50, 50]
        assert sent[0] == {"activity_id": "act", "direction": "upload", "remote_path": "/r",
                           "bytes_done": 50, "bytes_total": 100}
    finally:
        signals.transfer_progress.disconnect(receiver)


def test_a_batch_with_transfer_steps_cannot_be_streamed():
    from golem_sync import GolemUserError

    log: List[str] = []
    activity = FakeActivity()
    runner = runner_on(activity)
    batch = Batch(runner).run("true")
    batch._add_step(FakeStep(runner.transfer_env(), log, "a"))
    with pytest.raises(GolemUserError, match="end_stream"):
        batch.end_stream()
    assert log == [] and activity.executed == []


# -- a slow progress receiver on the socket thread: close() neither stalls nor leaks (audit #16) --

import logging
import threading
import time


class OneRequestWs:
    """A GSB API WebSocket that delivers ``frames`` and then blocks in recv until shut down."""

    def __init__(self, *frames: Dict[str, Any]) -> None:
        self.frames = [flex.dumps(f) for f in frames]
        self.dead = threading.Event()
        self.sent: List[Any] = []
        self.sock = None

    def settimeout(self, timeout: float) -> None:
        pass

    def recv_data(self) -> Any:
        import websocket
        if self.frames:
            return websocket.ABNF.OPCODE_BINARY, self.frames.pop(0)
        self.dead.wait(30)
        raise OSError("socket shut down")

    def send(self, data: bytes, opcode: Any = None) -> None:
        if self.dead.is_set():
            raise OSError("closed")
        self.sent.append(flex.loads(data))

    def shutdown(self) -> None:
        self.dead.set()


def serve(service: GsbService, ws: OneRequestWs) -> threading.Thread:
    """Start ``service``'s reader on ``ws`` as open() would, without yagna."""
    service.services_id, service._ws = "svc-1", ws  # type: ignore[assignment]
    service._thread = threading.Thread(target=service._serve, daemon=True)
    service._thread.start()
    return service._thread


UNBIND_ONLY = SimpleNamespace(gsb=SimpleNamespace(unbind_services=lambda sid: None))


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_closing_an_upload_while_its_progress_receiver_blocks_returns_at_once_and_closes_the_file_later(
        tmp_path, caplog):
    (tmp_path / "f").write_bytes(b"0123456789" * 10)
    inside, release = threading.Event(), threading.Event()

    def progress(done: int, total: Optional[int]) -> None:  # e.g. a transfer_progress receiver calling cancel()
        inside.set()
        release.wait(30)

    source = FileSource(tmp_path / "f")
    fd = source._fd
    pub = Publication(UNBIND_ONLY, "n", source, progress)  # type: ignore[arg-type]
    reader = serve(pub.service, OneRequestWs({"id": "1", "component": "GetChunk",
                                              "payload": {"offset": 0, "size": 10}}))
    assert inside.wait(5)
    closer = threading.Thread(target=pub.close)
    with caplog.at_level(logging.WARNING, logger="golem_sync.storage.service"):
        closer.start()
        closer.join(2.5)  # it used to wait 2 x 2.5 s for the reader, then give up
        assert not closer.is_alive()
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert fd_is_open(fd)  # the reader may still read from it: not closed under its feet
    release.set()
    reader.join(5)
    assert not reader.is_alive()
    assert source._fd == -1  # closed by the reader on its way out


def test_closing_an_idle_upload_closes_its_file_at_once(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    source = FileSource(tmp_path / "f")
    pub = Publication(UNBIND_ONLY, "n", source)  # type: ignore[arg-type]
    ws = OneRequestWs({"id": "1", "component": "GetMetadata", "payload": None})
    reader = serve(pub.service, ws)
    deadline = time.monotonic() + 5
    while not ws.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ws.sent == [{"id": "1", "payload": {"fileSize": 3}}]
    pub.close()
    assert source._fd == -1 and not reader.is_alive()


def test_closing_a_download_while_its_progress_receiver_blocks_removes_the_part_file_and_closes_it_later(
        tmp_path):
    inside, release = threading.Event(), threading.Event()

    def progress(done: int, total: Optional[int]) -> None:
        inside.set()
        release.wait(30)

    part = tmp_path / ".out.part"
    receipt = Receipt(UNBIND_ONLY, "n", part_path=part, progress=progress)  # type: ignore[arg-type]
    assert fd_is_open(receipt._fd)
    reader = serve(receipt.service, OneRequestWs({"id": "1", "component": "UploadChunk",
                                                  "payload": {"chunk": {"offset": 0, "content": b"abc"}}}))
    assert inside.wait(5)
    closer = threading.Thread(target=lambda: (receipt.close(), receipt.discard()))  # DownloadStep.close()
    closer.start()
    closer.join(2.5)
    assert not closer.is_alive()
    assert not part.exists()  # no partial file is left behind
    release.set()
    reader.join(5)
    assert not reader.is_alive() and receipt._fd == -1  # closed by the reader on its way out


# -- in-memory downloads: the provider does not choose how much the requestor allocates (audit #18)

def test_an_in_memory_download_has_a_default_size_limit():
    from golem_sync._transfer.gftp import MAX_MEMORY_DOWNLOAD

    assert MAX_MEMORY_DOWNLOAD == 64 * 1024 * 1024
    for method in (WorkContext.download_data, WorkContext.download_json):
        assert inspect.signature(method).parameters["max_size"].default == MAX_MEMORY_DOWNLOAD
    receipt = Receipt(NOT_CONNECTED, "n")  # type: ignore[arg-type]  # max_size not given
    with pytest.raises(GolemWorkError, match="max_size"):
        receipt.handle("UploadChunk", {"chunk": {"offset": MAX_MEMORY_DOWNLOAD, "content": b"x"}})
    assert len(receipt._buffer) == 0  # refused before anything was allocated


def test_a_chunk_far_beyond_the_bytes_received_is_refused_before_allocating():
    from golem_sync._transfer.gftp import REORDER_WINDOW

    receipt = Receipt(NOT_CONNECTED, "n", max_size=1 << 30)  # type: ignore[arg-type]
    with pytest.raises(GolemWorkError, match="past the 0 bytes received"):
        receipt.handle("UploadChunk", {"chunk": {"offset": 300_000_000, "content": b"x"}})
    assert len(receipt._buffer) == 0
    # Chunks a little out of order (within the window) are still fine.
    data = os.urandom(3 * 40960)
    for p in reversed(chunks_of(data, 40960)):
        receipt.handle("UploadChunk", p)
    receipt.handle("UploadFinished", {"hash": sha3(data)})
    assert receipt.data() == data
    edge = Receipt(NOT_CONNECTED, "n", max_size=1 << 30)  # type: ignore[arg-type]
    edge.handle("UploadChunk", {"chunk": {"offset": REORDER_WINDOW, "content": b"x"}})  # the window's edge
    with pytest.raises(GolemWorkError, match="past the"):
        edge.handle("UploadChunk", {"chunk": {"offset": 2 * REORDER_WINDOW + 2, "content": b"x"}})


def test_a_file_download_refuses_a_far_offset_too(tmp_path):
    receipt = Receipt(NOT_CONNECTED, "n", part_path=tmp_path / ".p")  # type: ignore[arg-type]
    with pytest.raises(GolemWorkError, match="past the 0 bytes received"):
        receipt.handle("UploadChunk", {"chunk": {"offset": 1 << 40, "content": b"x"}})
    assert (tmp_path / ".p").stat().st_size == 0
    receipt.discard()


def test_a_progress_callback_that_closes_its_own_transfer_does_not_deadlock(tmp_path):
    (tmp_path / "f").write_bytes(b"0123456789")
    source = FileSource(tmp_path / "f")
    pub: Optional[Publication] = None

    def progress(done: int, total: Optional[int]) -> None:  # runs on the reader thread
        assert pub is not None
        pub.close()

    pub = Publication(UNBIND_ONLY, "n", source, progress)  # type: ignore[arg-type]
    reader = serve(pub.service, OneRequestWs({"id": "1", "component": "GetChunk",
                                              "payload": {"offset": 0, "size": 10}}))
    reader.join(5)
    assert not reader.is_alive() and source._fd == -1
