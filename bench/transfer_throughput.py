"""Transfer throughput on the devnet: golem_sync versus the raw GSB-API sequence.

For 1, 10 and 100 MB, up (requestor -> provider) and down (provider -> requestor), it times:

- golem_sync: ``ctx.upload_file`` / ``ctx.download_file`` (bind, WebSocket, exec, poll results,
  unbind; downloads are sha3-256 verified and moved into place);
- raw: the same sequence written directly with plain ``requests`` + ``websocket-client`` +
  ``flatbuffers.flexbuffers`` and no golem_sync code: POST /gsb-api/v1/services, WebSocket
  serving GetMetadata/GetChunk (or UploadChunk/UploadFinished into a file, with the same sha3
  check), POST exec, long-poll the results, DELETE the services.

Both run inside the same activity, alternating (golem_sync, raw, golem_sync, raw, ...), after one
warm-up round each; each time covers the whole operation, bind to unbind. Prints the median
MB/s of each and golem_sync's share of the raw throughput.

Usage (starts and stops its own 1-provider devnet unless YAGNA_API_URL/YAGNA_APPKEY are set)::

    PYTHONPATH=. python bench/transfer_throughput.py [--sizes 1,10,100] [--rounds 3]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
import websocket
from flatbuffers import flexbuffers

MB = 1_000_000
CHUNK_LIMIT = 60 * 1024


# -- the raw sequence (no golem_sync) ------------------------------------------------------------

class Raw:
    """bind -> WebSocket -> exec -> poll -> unbind, by hand."""

    def __init__(self, api_url: str, app_key: str, activity_id: str) -> None:
        self.api = api_url.rstrip("/")
        self.key = app_key
        self.activity_id = activity_id
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {app_key}"
        me = self.http.get(f"{self.api}/me", timeout=10)
        me.raise_for_status()
        self.node_id = me.json()["identity"].lower()

    def _serve(self, components: List[str], handle: Callable[[str, Any], Any]) -> Tuple[str, str, Any, threading.Thread]:
        name = uuid.uuid4().hex
        resp = self.http.post(f"{self.api}/gsb-api/v1/services",
                              json={"listen": {"on": f"/public/gftp/{name}", "components": components}}, timeout=10)
        resp.raise_for_status()
        services_id = resp.json()["servicesId"]
        ws = websocket.create_connection(
            self.api.replace("http://", "ws://") + f"/gsb-api/v1/services/{services_id}?authToken={self.key}",
            subprotocols=["gsb+flexbuffers"], timeout=60)

        def loop() -> None:
            while True:
                try:
                    opcode, data = ws.recv_data()
                except Exception:
                    return
                if opcode != websocket.ABNF.OPCODE_BINARY:
                    return
                msg = flexbuffers.Loads(data)
                try:
                    reply = {"id": msg["id"], "payload": handle(msg["component"], msg.get("payload"))}
                except Exception as exc:
                    reply = {"id": msg["id"], "error": {"InternalError": str(exc)}}
                ws.send(bytes(flexbuffers.Dumps(reply)), opcode=websocket.ABNF.OPCODE_BINARY)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return name, services_id, ws, thread

    def _run(self, transfer: Dict[str, str]) -> None:
        resp = self.http.post(f"{self.api}/activity-api/v1/activity/{self.activity_id}/exec",
                              json={"text": json.dumps([{"transfer": transfer}])}, timeout=10)
        resp.raise_for_status()
        batch_id = resp.json()
        while True:
            resp = self.http.get(f"{self.api}/activity-api/v1/activity/{self.activity_id}/exec/{batch_id}",
                                 params={"timeout": 5}, timeout=15)
            if resp.status_code == 408:
                continue
            resp.raise_for_status()
            results = resp.json()
            if results and results[-1]["isBatchFinished"]:
                if results[-1]["result"] != "Ok":
                    raise RuntimeError(f"raw transfer failed: {results[-1]}")
                return

    def _close(self, services_id: str, ws: Any, thread: threading.Thread) -> None:
        self.http.delete(f"{self.api}/gsb-api/v1/services/{services_id}", timeout=10)
        thread.join(5)
        ws.close()

    def upload(self, path: Path, remote: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        size = os.fstat(fd).st_size

        def handle(component: str, payload: Any) -> Any:
            if component == "GetMetadata":
                return {"fileSize": size}
            offset = payload["offset"]
            return {"offset": offset, "content": os.pread(fd, min(payload["size"], CHUNK_LIMIT), offset)}

        try:
            name, services_id, ws, thread = self._serve(["GetMetadata", "GetChunk"], handle)
            try:
                self._run({"from": f"gftp://{self.node_id}/{name}", "to": f"container:{remote}"})
            finally:
                self._close(services_id, ws, thread)
        finally:
            os.close(fd)

    def download(self, remote: str, path: Path) -> None:
        part = path.with_name(path.name + ".part")
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        hasher = hashlib.sha3_256()
        state = {"ok": False}

        def handle(component: str, payload: Any) -> Any:
            if component == "UploadChunk":
                chunk = payload["chunk"]
                content = bytes(chunk["content"])
                os.pwrite(fd, content, chunk["offset"])
                hasher.update(content)  # the devnet provider sends chunks in order
                return None
            if hasher.hexdigest() != payload["hash"]:
                raise ValueError("hash mismatch")
            state["ok"] = True
            return None

        try:
            name, services_id, ws, thread = self._serve(["UploadChunk", "UploadFinished"], handle)
            try:
                self._run({"from": f"container:{remote}", "to": f"gftp://{self.node_id}/{name}"})
            finally:
                self._close(services_id, ws, thread)
        finally:
            os.close(fd)
        if not state["ok"]:
            raise RuntimeError("raw download not verified")
        os.replace(part, path)


# -- the benchmark -------------------------------------------------------------------------------

def measure(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(ctx: Any, api_url: str, app_key: str, work: Path, sizes: List[int], rounds: int) -> List[Dict[str, Any]]:
    raw = Raw(api_url, app_key, ctx.activity_id)
    rows = []
    for size_mb in sizes:
        source = work / f"src-{size_mb}.bin"
        with open(source, "wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(MB))
        remote_lib, remote_raw = f"/golem/input/lib-{size_mb}.bin", f"/golem/input/raw-{size_mb}.bin"
        times: Dict[Tuple[str, str], List[float]] = {(d, i): [] for d in ("up", "down") for i in ("golem_sync", "raw")}
        for n in range(rounds + 1):  # round 0 warms up both paths and is not counted
            steps = [
                (("up", "golem_sync"), lambda: ctx.upload_file(source, remote_lib, timeout=600)),
                (("up", "raw"), lambda: raw.upload(source, remote_raw)),
                (("down", "golem_sync"), lambda: ctx.download_file(remote_lib, work / "down-lib.bin", timeout=600)),
                (("down", "raw"), lambda: raw.download(remote_raw, work / "down-raw.bin")),
            ]
            if n % 2:  # alternate who goes first, so neither always gets a warmer cache
                steps = [steps[1], steps[0], steps[3], steps[2]]
            for key, fn in steps:
                elapsed = measure(fn)
                if n:
                    times[key].append(elapsed)
        for name in ("down-lib.bin", "down-raw.bin"):
            assert (work / name).stat().st_size == source.stat().st_size, name
        for direction in ("up", "down"):
            lib = statistics.median(times[(direction, "golem_sync")])
            base = statistics.median(times[(direction, "raw")])
            rows.append({"size_mb": size_mb, "direction": direction,
                         "golem_sync_s": lib, "raw_s": base,
                         "golem_sync_MBps": size_mb / lib, "raw_MBps": size_mb / base,
                         "ratio": base / lib})
        for path in (source, work / "down-lib.bin", work / "down-raw.bin"):
            path.unlink(missing_ok=True)
        ctx.run(f"rm -f {remote_lib} {remote_raw}")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,100", help="sizes in MB (10^6 bytes), comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per size (median)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from golem_sync import GolemNetwork

    devnet = None
    if os.environ.get("YAGNA_API_URL") and os.environ.get("YAGNA_APPKEY"):
        api_url, app_key = os.environ["YAGNA_API_URL"], os.environ["YAGNA_APPKEY"]
        subnet = os.environ.get("YAGNA_SUBNET", "devnet")
        registry = os.environ.get("GOLEM_REGISTRY_URL")
        network_name = os.environ.get("YAGNA_PAYMENT_NETWORK") or None  # None: PaymentOptions decides
    else:
        from golem_sync.devnet.launcher import Devnet
        devnet = Devnet(providers=1)
        info = devnet.up()
        api_url, app_key, subnet, registry = info.api_url, info.app_key, info.subnet, info.registry_url
        network_name = info.payment_network
    try:
        with tempfile.TemporaryDirectory(prefix="golem-bench-") as tmp, GolemNetwork(
                yagna={"api_url": api_url, "app_key": app_key},
                payment={"network": network_name, "invoice_wait_sec": 20},
                market={"subnet_tag": subnet},
                package={"image_tag": "golem/alpine:latest", "registry_url": registry}) as golem:
            job = golem.create_job()
            job.start_work(lambda ctx: bench(ctx, api_url, app_key, Path(tmp), sizes, args.rounds))
            rows = job.wait_for_result(timeout=3600)
    finally:
        if devnet is not None:
            devnet.down()
    print(f"{'size':>6} {'dir':>5} {'golem_sync MB/s':>16} {'raw MB/s':>9} {'golem_sync/raw':>15}")
    for row in rows:
        print(f"{row['size_mb']:>4}MB {row['direction']:>5} {row['golem_sync_MBps']:>16.1f} "
              f"{row['raw_MBps']:>9.1f} {row['ratio']:>14.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(row["ratio"] >= 0.8 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
