"""The exe-unit emulator against a REAL yagna: the requestor drives it over yagna's REST API.

One yagna node per module plays requestor and provider (two identities). The provider side
(offer, counter, approve, activity events) is done here with plain ``requests``; per test an
agreement and an activity are made and an :class:`ExeUnit` serves the activity.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from golem_sync.devnet.exeunit import ExeUnit, ExeUnitFaults
from golem_sync.devnet.gsb import GsbConnection, decode_body, encode_body

pytestmark = pytest.mark.devnet

yagna_mod = pytest.importorskip("golem_sync.devnet.yagna")
websocket = pytest.importorskip("websocket")

logger = logging.getLogger("tests.devnet.exeunit")

# anvil's well-known dev keys #0 and #1 (test keys, public knowledge).
REQUESTOR_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcab78d5ba9ef2ff80"
PROVIDER_KEY = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
USAGE_VECTOR = ["golem.usage.cpu_sec", "golem.usage.duration_sec"]


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Api:
    """One identity's REST access to the node."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.key = key

    def call(self, method: str, path: str, *, expect: Tuple[int, ...] = (200, 201, 204),
             timeout: float = 15.0, **kwargs: Any) -> Any:
        resp = self.session.request(method, self.base + path, timeout=timeout, **kwargs)
        if resp.status_code not in expect:
            raise AssertionError(f"{method} {path} -> {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def raw(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15.0)
        return self.session.request(method, self.base + path, **kwargs)


class Devnet:
    def __init__(self, node: Any, provider_id: str, provider_key: str) -> None:
        self.node = node
        self.requestor_id: str = node.requestor_id
        self.provider_id = provider_id
        self.req = Api(node.api_url, node.app_key)
        self.prov = Api(node.api_url, provider_key)
        self.subnet = "devnet-" + uuid.uuid4().hex[:8]
        self.offer = {
            "properties": {
                "golem.node.debug.subnet": self.subnet,
                "golem.runtime.name": "vm",
                "golem.com.scheme": "payu",
                "golem.com.pricing.model": "linear",
                "golem.com.pricing.model.linear.coeffs": [0.0, 0.0, 0.0],
                "golem.com.usage.vector": USAGE_VECTOR,
                "golem.srv.caps.multi-activity": True,
                "golem.inf.cpu.threads": 1,
            },
            "constraints": f"(golem.node.debug.subnet={self.subnet})",
        }
        self.offer_id = self.prov.call("POST", "/market-api/v1/offers", json=self.offer)

    def agreement(self) -> str:
        """Negotiate one agreement (requestor demand <-> our offer) and return its id."""
        expiration = int((time.time() + 1800) * 1000)
        demand = {
            "properties": {"golem.node.debug.subnet": self.subnet,
                           "golem.srv.comp.expiration": expiration},
            "constraints": f"(golem.node.debug.subnet={self.subnet})",
        }
        demand_id = self.req.call("POST", "/market-api/v1/demands", json=demand)
        try:
            proposal = self._requestor_proposal(demand_id, "Initial")
            self.req.call("POST", f"/market-api/v1/demands/{demand_id}/proposals/{proposal}",
                          json=demand)
            # The provider answers the requestor's counter with a counter of its own.
            for event in self._events(f"/market-api/v1/offers/{self.offer_id}/events", self.prov,
                                      lambda e: e.get("eventType") == "ProposalEvent"):
                theirs = event["proposal"]["proposalId"]
                self.prov.call("POST", f"/market-api/v1/offers/{self.offer_id}/proposals/{theirs}",
                               json=self.offer)
                break
            draft = self._requestor_proposal(demand_id, "Draft")
            valid_to = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
            agreement_id: str = self.req.call("POST", "/market-api/v1/agreements",
                                              json={"proposalId": draft, "validTo": valid_to})
            self.req.call("POST", f"/market-api/v1/agreements/{agreement_id}/confirm")
            approver = threading.Thread(target=self._approve, args=(agreement_id,), daemon=True)
            approver.start()
            # 204 = approved (anything else raises in call()).
            self.req.call("POST", f"/market-api/v1/agreements/{agreement_id}/wait",
                          params={"timeout": 10}, expect=(204,), timeout=15)
            approver.join(10)
            return agreement_id
        finally:
            self.req.call("DELETE", f"/market-api/v1/demands/{demand_id}", expect=(200, 204, 404))

    def _approve(self, agreement_id: str) -> None:
        for _ in self._events(f"/market-api/v1/offers/{self.offer_id}/events", self.prov,
                              lambda e: e.get("eventType") == "AgreementEvent"
                              and e["agreement"]["agreementId"] == agreement_id):
            self.prov.call("POST", f"/market-api/v1/agreements/{agreement_id}/approve",
                           params={"timeout": 10}, timeout=15)
            return

    def _requestor_proposal(self, demand_id: str, state: str) -> str:
        for event in self._events(f"/market-api/v1/demands/{demand_id}/events", self.req,
                                  lambda e: e.get("eventType") == "ProposalEvent"
                                  and e["proposal"]["state"] == state):
            return str(event["proposal"]["proposalId"])
        raise AssertionError("unreachable")

    def _events(self, path: str, api: Api, want: Callable[[Dict[str, Any]], bool],
                timeout: float = 10.0) -> Iterator[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in api.call("GET", path, params={"timeout": 2, "maxEvents": 10}, timeout=10) or []:
                if want(event):
                    yield event
                    return
        raise AssertionError(f"no wanted event from {path} within {timeout}s")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    try:
        yagna_mod.find_yagna()
    except Exception as exc:
        pytest.skip(f"yagna not available: {exc}")
    node = yagna_mod.YagnaNode(tmp_path_factory.mktemp("yagna"), requestor_secret=REQUESTOR_KEY)
    node.start()
    try:
        ident = node.add_identity("prov", PROVIDER_KEY)
        node.restart()  # the central net binds identities only at start
        yield Devnet(node, ident.node_id, ident.app_key)
    finally:
        node.stop()


class Activity:
    """A requestor activity served by an ExeUnit (the provider side lives in this test file)."""

    def __init__(self, devnet: Devnet, work_dir: Path, faults: Optional[ExeUnitFaults]) -> None:
        self.devnet = devnet
        self.agreement_id = devnet.agreement()
        since = _now_rfc3339()
        created: Dict[str, Any] = {}

        def create() -> None:
            created["resp"] = devnet.req.raw(
                "POST", "/activity-api/v1/activity", params={"timeout": 10},
                json={"agreementId": self.agreement_id}, timeout=15)

        creator = threading.Thread(target=create, daemon=True)
        creator.start()
        event = self._provider_event("CreateActivity", since)
        self.id: str = event["activityId"]
        self.exeunit = ExeUnit(gsb_url=devnet.node.gsb_url, activity_id=self.id,
                               agreement_id=self.agreement_id, work_dir=work_dir,
                               usage_vector=USAGE_VECTOR, faults=faults)
        self.exeunit.start()
        creator.join(15)
        resp = created["resp"]
        assert resp.status_code in (200, 201), resp.text  # yagna 0.17.6 answers 200, the spec says 201
        body = resp.json()
        assert (body["activityId"] if isinstance(body, dict) else body) == self.id
        self.since = since

    def _provider_event(self, kind: str, since: str, timeout: float = 10.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.devnet.prov.call("GET", "/activity-api/v1/events",
                                           params={"afterTimestamp": since, "timeout": 2,
                                                   "maxEvents": 10}, timeout=10) or []
            for event in events:
                etype = event.get("eventType")
                name = next(iter(etype)) if isinstance(etype, dict) else etype
                if name == kind and (kind == "CreateActivity"
                                     or event.get("activityId") == getattr(self, "id", None)):
                    return dict(event)
                since = event.get("eventDate", since)
        raise AssertionError(f"no {kind} event within {timeout}s")

    def exec(self, script: List[Dict[str, Any]]) -> str:
        batch: str = self.devnet.req.call("POST", f"/activity-api/v1/activity/{self.id}/exec",
                                          json={"text": json.dumps(script)})
        return batch

    def results(self, batch: str, *, timeout: float = 10.0, command_index: Optional[int] = None,
                expect: Tuple[int, ...] = (200,)) -> Any:
        params: Dict[str, Any] = {"timeout": timeout}
        if command_index is not None:
            params["commandIndex"] = command_index
        return self.devnet.req.call("GET", f"/activity-api/v1/activity/{self.id}/exec/{batch}",
                                    params=params, expect=expect, timeout=timeout + 5)

    def state(self) -> List[Any]:
        body = self.devnet.req.call("GET", f"/activity-api/v1/activity/{self.id}/state")
        return list(body["state"])

    def run(self, script: List[Dict[str, Any]], timeout: float = 10.0) -> List[Dict[str, Any]]:
        batch = self.exec(script)
        results: List[Dict[str, Any]] = self.results(batch, timeout=timeout)
        return results

    def destroy(self) -> float:
        """Requestor DELETE; the provider side stops the ExeUnit on DestroyActivity. Seconds taken."""
        since = self.since
        done: Dict[str, Any] = {}

        def delete() -> None:
            # yagna answers only once the provider reported Terminated (or after its timeout).
            done["resp"] = self.devnet.req.raw("DELETE", f"/activity-api/v1/activity/{self.id}",
                                               params={"timeout": 10}, timeout=15)

        started = time.monotonic()
        deleter = threading.Thread(target=delete, daemon=True)
        deleter.start()
        self._provider_event("DestroyActivity", since)
        self.exeunit.stop("destroyed by requestor")
        deleter.join(15)
        assert done["resp"].status_code in (200, 204), done["resp"].text
        return time.monotonic() - started


@pytest.fixture
def activity_factory(devnet: Devnet, tmp_path: Path) -> Iterator[Callable[..., Activity]]:
    made: List[Activity] = []

    def make(faults: Optional[ExeUnitFaults] = None) -> Activity:
        act = Activity(devnet, tmp_path / f"act{len(made)}", faults)
        made.append(act)
        return act

    yield make
    for act in made:
        act.exeunit.stop("test over")
        # Best effort: a crashed unit never reports Terminated, so do not wait for it.
        devnet.req.raw("DELETE", f"/activity-api/v1/activity/{act.id}", params={"timeout": 1},
                       timeout=10)


@pytest.fixture
def ready(activity_factory: Callable[..., Activity]) -> Activity:
    """A deployed and started activity."""
    act = activity_factory()
    results = act.run([{"deploy": {"env": {"GREETING": "hello from deploy"}}},
                       {"start": {"args": []}}])
    assert [r["result"] for r in results] == ["Ok", "Ok"]
    return act


def _sh(script: str, **capture: Any) -> Dict[str, Any]:
    run: Dict[str, Any] = {"entry_point": "/bin/sh", "args": ["-c", script]}
    if capture:
        run["capture"] = capture
    return {"run": run}


# -- tests -----------------------------------------------------------------------------------

def test_deploy_start_reach_ready_and_state_is_reported(activity_factory: Callable[..., Activity]) -> None:
    act = activity_factory()
    assert act.state()[0] == "Initialized"
    results = act.run([{"deploy": {"net": [], "hosts": {}, "hostname": "h", "env": {"A": "1"},
                                   "progress": {"updateInterval": "1s"}}},
                       {"start": {"args": []}}])
    assert [(r["index"], r["result"], r["isBatchFinished"]) for r in results] == \
        [(0, "Ok", False), (1, "Ok", True)]
    assert act.exeunit.state == "Ready"
    assert act.exeunit.deployment["env"] == {"A": "1"}
    assert act.exeunit.deployment["hostname"] == "h"
    assert act.state()[0] == "Ready"


def test_run_echo_with_env_and_measure_latency(ready: Activity) -> None:
    script = [_sh('echo "$GREETING"; pwd', stdout={"atEnd": {}})]
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        results = ready.run(script)
        timings.append(time.perf_counter() - started)
    assert results[0]["result"] == "Ok"
    lines = results[0]["stdout"].splitlines()
    assert lines[0] == "hello from deploy"
    assert Path(lines[1]) == ready.exeunit.container_path("/golem/work")
    timings.sort()
    logger.warning("exec+poll echo: median %.1f ms (min %.1f, max %.1f)",
                   timings[2] * 1000, timings[0] * 1000, timings[-1] * 1000)


def test_failing_command_stops_the_batch(ready: Activity) -> None:
    results = ready.run([_sh("echo before"), _sh("echo oops >&2; exit 3"), _sh("echo never")])
    assert len(results) == 2
    assert results[0]["result"] == "Ok" and results[0]["stdout"] == "before\n"
    failed = results[1]
    assert failed["result"] == "Error"
    assert failed["message"] == "ExeScript command exited with code 3"
    assert failed["stderr"] == "oops\n"
    assert failed["isBatchFinished"] is True


def test_results_are_cumulative_and_command_index_times_out(ready: Activity) -> None:
    batch = ready.exec([_sh("echo one"), _sh("sleep 1.5; echo two")])
    first = ready.results(batch, timeout=5, command_index=0)
    assert [r["index"] for r in first] == [0]
    started = time.monotonic()
    resp = ready.devnet.req.raw("GET", f"/activity-api/v1/activity/{ready.id}/exec/{batch}",
                                params={"timeout": 0.3, "commandIndex": 1})
    assert resp.status_code == 408, resp.text
    assert time.monotonic() - started < 1.4
    everything = ready.results(batch, timeout=5)
    assert [r["index"] for r in everything] == [0, 1]
    assert everything[1]["stdout"] == "two\n"
    missing = ready.devnet.req.raw("GET", f"/activity-api/v1/activity/{ready.id}/exec/nosuchbatch",
                                   params={"timeout": 1})
    assert missing.status_code == 404, missing.text


def test_capture_head_and_tail(ready: Activity) -> None:
    results = ready.run([
        _sh("printf 0123456789", stdout={"atEnd": {"head": 4}}),
        _sh("printf 0123456789", stdout={"atEnd": {"tail": 3}}),
        _sh("printf 0123456789; printf err >&2", stdout={"stream": {}}),
    ])
    assert [r["stdout"] for r in results] == ["0123", "789", "0123456789"]
    assert results[2]["stderr"] is None  # capture spec without stderr: not captured


def _sse_events(act: Activity, batch: str, last_index: int) -> List[Tuple[float, Dict[str, Any]]]:
    """Read runtime events until command ``last_index`` finished (or a command failed)."""
    started = time.monotonic()
    resp = act.devnet.req.raw("GET", f"/activity-api/v1/activity/{act.id}/exec/{batch}",
                              headers={"Accept": "text/event-stream"}, stream=True, timeout=(5, 10))
    events: List[Tuple[float, Dict[str, Any]]] = []
    try:
        assert resp.status_code == 200, resp.text
        for line in resp.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                events.append((time.monotonic() - started, event))
                finished = event["kind"].get("finished")
                if finished is not None and (event["index"] >= last_index
                                             or finished["return_code"] != 0):
                    break  # yagna never ends the stream itself
    finally:
        resp.close()
    return events


def test_sse_stream_delivers_runtime_events_live(activity_factory: Callable[..., Activity]) -> None:
    act = activity_factory()
    # A deploy the way golem-js sends it (VPN, hosts, volumes, progress), echoed back in `started`.
    deploy = {"deploy": {
        "net": [{"id": "net1", "ip": "192.168.0.0", "mask": "255.255.255.0", "gateway": None,
                 "nodeIp": "192.168.0.2", "nodes": {"192.168.0.1": act.devnet.requestor_id}}],
        "hosts": {"req": "192.168.0.1"}, "hostname": "worker", "volumes": ["/golem/input"],
        "env": {"X": "1"}, "progress": {"updateInterval": "1s", "updateStep": None}}}
    script: List[Dict[str, Any]] = [deploy, {"start": {"args": []}},
              _sh("printf 0123456789", stdout={"atEnd": {"head": 4}}, stderr={"stream": {"limit": 10}}),
              _sh("echo first; sleep 1; echo second")]
    batch = act.exec(script)
    events = _sse_events(act, batch, last_index=3)
    started = [e for _, e in events if "started" in e["kind"]]
    assert [e["index"] for e in started] == [0, 1, 2, 3]
    assert started[0]["kind"]["started"]["command"]["deploy"]["net"][0]["nodeIp"] == "192.168.0.2"
    assert started[2]["kind"]["started"]["command"]["run"]["capture"]["stdout"] == {"atEnd": {"head": 4}}
    assert act.exeunit.deployment["hosts"] == {"req": "192.168.0.1"}
    last = [(t, e) for t, e in events if e["index"] == 3]
    outs = [(t, e["kind"]["stdout"]) for t, e in last if "stdout" in e["kind"]]
    assert "".join(text for _, text in outs) == "first\nsecond\n"
    # "first" arrived a sleep before the end: the stream is live, not replayed at the end.
    first_at = next(t for t, text in outs if "first" in text)
    assert last[-1][0] - first_at > 0.7
    assert last[-1][1]["kind"]["finished"] == {"return_code": 0, "message": None}
    assert [r["stdout"] for r in act.results(batch)][2] == "0123"


def test_sse_stream_reports_a_failing_command(ready: Activity) -> None:
    batch = ready.exec([_sh("echo bad >&2; exit 7"), _sh("echo never")])
    events = _sse_events(ready, batch, last_index=1)
    kinds = [(e["index"], next(iter(e["kind"]))) for _, e in events]
    assert kinds == [(0, "started"), (0, "stderr"), (0, "finished")]
    assert events[-1][1]["kind"]["finished"] == {
        "return_code": 7, "message": "ExeScript command exited with code 7"}


def test_container_path_escape_is_an_error_result(ready: Activity, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    results = ready.run([
        _sh("echo secret > /golem/output/x.txt"),
        {"transfer": {"from": "container:/golem/output/x.txt",
                      "to": "container:/golem/output/../../../../outside.txt"}},
    ])
    assert results[0]["result"] == "Ok"
    assert results[1]["result"] == "Error"
    assert "escapes" in results[1]["message"]
    assert not outside.exists()
    written = {p.name for p in ready.exeunit.work_dir.parent.rglob("outside.txt")}
    assert written == set()


def test_malformed_exec_is_rejected_without_harm(ready: Activity) -> None:
    # yagna itself rejects unknown commands with 400 before they reach the exe-unit.
    bad = ready.devnet.req.raw("POST", f"/activity-api/v1/activity/{ready.id}/exec",
                               json={"text": json.dumps([{"frobnicate": {}}])})
    assert bad.status_code == 400
    # An undecodable body sent straight over GSB gets an error reply, and the unit keeps working.
    conn = ready.exeunit.connection
    assert conn is not None
    reply = decode_body(conn.call_raw(ready.exeunit.address + "/Exec", b"\x01\x02garbage", 5))
    assert "Err" in reply
    reply = conn.call(ready.exeunit.address + "/Exec",
                      {"activityId": ready.id, "batchId": "b1", "exeScript": [{"frobnicate": {}}],
                       "timeout": None}, 5)
    assert "badRequest" in reply["Err"]
    assert ready.run([_sh("echo still alive")])[0]["stdout"] == "still alive\n"


def test_http_and_file_transfers(ready: Activity, tmp_path: Path) -> None:
    payload = os.urandom(100_000)
    received: Dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_PUT(self) -> None:  # noqa: N802
            if self.headers.get("Transfer-Encoding") == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    data += self.rfile.read(size)
                    self.rfile.readline()
            else:
                data = self.rfile.read(int(self.headers["Content-Length"]))
            received[self.path] = data
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    local_in = tmp_path / "in.bin"
    local_in.write_bytes(payload[:1000])
    local_out = tmp_path / "out" / "copy.bin"
    try:
        results = ready.run([
            {"transfer": {"from": f"{base}/data.bin", "to": "container:/golem/input/data.bin"}},
            _sh("cat /golem/input/data.bin > /golem/output/result.bin"),
            {"transfer": {"from": "container:/golem/output/result.bin", "to": f"{base}/up.bin"}},
            {"transfer": {"from": f"file://{local_in}", "to": "container:/golem/input/small.bin"}},
            {"transfer": {"from": "container:/golem/input/small.bin", "to": f"file://{local_out}"}},
        ])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [r["result"] for r in results] == ["Ok"] * 5, results
    assert received["/up.bin"] == payload
    assert local_out.read_bytes() == payload[:1000]


class GsbApiFiles:
    """The requestor side of gftp through yagna's GSB API (REST + WebSocket), for the test."""

    def __init__(self, api: Api, requestor_id: str) -> None:
        self.api = api
        self.requestor_id = requestor_id
        self.ws_list: List[Any] = []
        self.threads: List[threading.Thread] = []
        self.services: List[str] = []

    def _bind(self, name: str, components: List[str], serve: Callable[[Dict[str, Any]], Any]) -> str:
        body = self.api.call("POST", "/gsb-api/v1/services",
                             json={"listen": {"on": f"/public/gftp/{name}", "components": components}})
        services_id = body["servicesId"]
        self.services.append(services_id)
        ws_url = self.api.base.replace("http://", "ws://") + \
            f"/gsb-api/v1/services/{services_id}?authToken={self.api.key}"
        ws = websocket.create_connection(ws_url, subprotocols=["gsb+flexbuffers"], timeout=10)
        self.ws_list.append(ws)

        def loop() -> None:
            while True:
                try:
                    opcode, data = ws.recv_data()
                except Exception:
                    return
                if opcode != websocket.ABNF.OPCODE_BINARY:
                    return  # a close frame is not flexbuffers
                msg = decode_body(data)
                try:
                    reply = {"id": msg["id"], "payload": serve(msg)}
                except Exception as exc:
                    reply = {"id": msg["id"], "error": {"message": str(exc)}}
                ws.send(encode_body(reply), opcode=websocket.ABNF.OPCODE_BINARY)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self.threads.append(thread)
        return f"gftp://{self.requestor_id}/{name}"

    def publish(self, data: bytes) -> str:
        def serve(msg: Dict[str, Any]) -> Any:
            if msg["component"] == "GetMetadata":
                return {"fileSize": len(data)}
            chunk = msg["payload"]
            offset = chunk["offset"]
            return {"offset": offset, "content": data[offset:offset + chunk["size"]]}
        return self._bind(uuid.uuid4().hex, ["GetMetadata", "GetChunk"], serve)

    def receive(self, into: Dict[str, Any]) -> str:
        into["data"] = bytearray()

        def serve(msg: Dict[str, Any]) -> Any:
            payload = msg["payload"]
            if msg["component"] == "UploadChunk":
                chunk = payload["chunk"]
                buf = into["data"]
                end = chunk["offset"] + len(chunk["content"])
                if len(buf) < end:
                    buf.extend(b"\0" * (end - len(buf)))
                buf[chunk["offset"]:end] = chunk["content"]
            else:
                into["hash"] = payload["hash"]
            return None
        return self._bind(uuid.uuid4().hex, ["UploadChunk", "UploadFinished"], serve)

    def close(self) -> None:
        for services_id in self.services:
            self.api.raw("DELETE", f"/gsb-api/v1/services/{services_id}")
        for ws in self.ws_list:
            ws.close()
        for thread in self.threads:
            thread.join(5)


def test_gftp_upload_and_download_through_gsb_api(ready: Activity) -> None:
    files = GsbApiFiles(ready.devnet.req, ready.devnet.requestor_id)
    data = os.urandom(5 * 1024 * 1024)
    received: Dict[str, Any] = {}
    try:
        source = files.publish(data)
        target = files.receive(received)
        started = time.monotonic()
        up = ready.run([{"transfer": {"from": source, "to": "container:/golem/input/big.bin"}}],
                       timeout=60)
        upload_s = time.monotonic() - started
        started = time.monotonic()
        down = ready.run([{"transfer": {"from": "container:/golem/input/big.bin", "to": target}}],
                         timeout=60)
        download_s = time.monotonic() - started
    finally:
        files.close()
    results = up + down
    assert [r["result"] for r in results] == ["Ok", "Ok"], results
    assert ready.exeunit.container_path("/golem/input/big.bin").read_bytes() == data
    assert bytes(received["data"]) == data
    assert received["hash"] == hashlib.sha3_256(data).hexdigest()
    mb = len(data) / 1e6
    logger.warning("gftp 5 MB: to provider %.2f s (%.1f MB/s), back to requestor %.2f s (%.1f MB/s)",
                   upload_s, mb / upload_s, download_s, mb / download_s)


def test_heartbeat_keeps_activity_ready_past_six_seconds(ready: Activity) -> None:
    deadline = time.monotonic() + 6.5
    states = set()
    while time.monotonic() < deadline:
        states.add(ready.state()[0])
        ready.exeunit.wait_stopped(0.5)  # a bounded pause that also ends if the unit dies
    assert states == {"Ready"}
    usage = ready.devnet.req.call("GET", f"/activity-api/v1/activity/{ready.id}/usage")
    cpu, duration = usage["currentUsage"]
    assert duration >= 6.0
    assert cpu >= 0.0


def test_cpu_usage_counts_child_cpu_time(ready: Activity) -> None:
    before = ready.exeunit.usage()[0]
    ready.run([_sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")], timeout=30)
    after = ready.exeunit.usage()[0]
    assert after - before > 0.05


def test_crash_makes_activity_unresponsive(activity_factory: Callable[..., Activity]) -> None:
    act = activity_factory(ExeUnitFaults(crash_after=0.5))
    assert act.exeunit.wait_stopped(5)
    deadline = time.monotonic() + 15
    state = act.state()[0]
    while time.monotonic() < deadline and state not in ("Unresponsive", "Terminated"):
        threading.Event().wait(0.5)
        state = act.state()[0]
    assert state in ("Unresponsive", "Terminated")


def test_destroy_terminates_and_stops_the_exeunit(ready: Activity) -> None:
    took = ready.destroy()
    logger.warning("activity destroy took %.2f s", took)
    assert ready.exeunit.stopped
    assert ready.exeunit.state == "Terminated"
    resp = ready.devnet.req.raw("GET", f"/activity-api/v1/activity/{ready.id}/state")
    assert resp.status_code == 200 and resp.json()["state"][0] == "Terminated"


def test_terminate_command_and_stop_kills_running_child(ready: Activity) -> None:
    batch = ready.exec([_sh("sleep 30")])
    ready.results(batch, timeout=0.5)  # let it start
    started = time.monotonic()
    ready.exeunit.stop("test")
    assert time.monotonic() - started < 4
    assert ready.exeunit.state == "Terminated"
    assert ready.state()[0] == "Terminated"


def test_faults_are_validated() -> None:
    with pytest.raises(Exception):
        ExeUnitFaults(result_delay=-1)
    with pytest.raises(Exception):
        ExeUnitFaults(crash_after="soon")  # type: ignore[arg-type]
    assert ExeUnitFaults(stop_heartbeat_after=1.0).stop_heartbeat_after == 1.0


def test_container_paths_map_into_the_work_dir_and_never_out(tmp_path: Path) -> None:
    unit = ExeUnit(gsb_url="tcp://127.0.0.1:1", activity_id="a1", agreement_id="g1",
                   work_dir=tmp_path, usage_vector=USAGE_VECTOR)
    root = tmp_path.resolve()
    assert unit.container_path("/golem/output/r.txt") == root / "golem/output/r.txt"
    assert unit.container_path("rel.txt") == root / "golem/work/rel.txt"
    assert unit.container_path("/golem/input/../output/x") == root / "golem/output/x"
    for bad in ("/golem/../../x", "/../etc/passwd", "../../../x", "/golem/work/../../../x"):
        with pytest.raises(Exception, match="escapes"):
            unit.container_path(bad)
    mapped = unit.paths.map_arg("cd /golem/work && cp /golem/input/a /golem/workshop/b")
    assert mapped == f"cd {root}/golem/work && cp {root}/golem/input/a /golem/workshop/b"
    with pytest.raises(Exception, match="escapes"):
        unit.paths.map_arg("/golem/output/../../../x")


def test_stopped_heartbeat_makes_activity_unresponsive(activity_factory: Callable[..., Activity]) -> None:
    act = activity_factory(ExeUnitFaults(stop_heartbeat_after=0.5))
    deadline = time.monotonic() + 12
    state = act.state()[0]
    while time.monotonic() < deadline and state != "Unresponsive":
        act.exeunit.wait_stopped(0.5)  # bounded pause; the unit itself stays up
        state = act.state()[0]
    assert state == "Unresponsive"
    assert not act.exeunit.stopped


def test_result_delay_and_running_command(activity_factory: Callable[..., Activity]) -> None:
    act = activity_factory(ExeUnitFaults(result_delay=0.8))
    batch = act.exec([{"deploy": {}}, {"start": {}}])
    started = time.monotonic()
    act.results(batch, timeout=10)
    assert time.monotonic() - started >= 1.5  # two results, each held back 0.8 s
    batch = act.exec([_sh("sleep 2")])
    threading.Event().wait(0.3)
    # yagna 0.17.6 routes REST GET /activity/{id}/command to /public/activity (unbound: 500),
    # not to the exe-unit, so ask the exe-unit over GSB like yagna would.
    probe = GsbConnection(act.devnet.node.gsb_url, "probe")
    probe.connect(5)
    try:
        body = {"activityId": act.id, "timeout": None}
        running = probe.call(act.exeunit.address + "/GetRunningCommand", body, 5)
        assert running == {"Ok": [{"command": "Run", "progress": None,
                                   "params": ["/bin/sh", "-c", "sleep 2"]}]}
        act.results(batch, timeout=10)
        idle = probe.call(act.exeunit.address + "/GetRunningCommand", body, 5)
        assert "notFound" in idle["Err"]
    finally:
        probe.close()
