"""A stateful fake yagna on top of `responses`: enough REST for a whole job (negotiate, agree,
create activity, deploy/start, run batches, destroy, terminate, debit notes, invoices).

For the error-path tests: knobs make any step fail, hang or race (``fail``, ``approve``/``max_wait``,
``batch_delay``, ``accept_fail``) and ``push_*`` inject provider-side events. For the pool tests,
``offer_props`` are the properties every provider offers, ``usage`` sets an activity's reported
usage, ``activity_agreement`` records the agreement each activity was created on and
``command_hang`` makes the liveness probe of an idle lease (``GET .../command``) hang. Whole-job
behaviour against the REAL yagna lives in ``tests/devnet``; this stand-in is for paths real yagna
cannot be made to take on demand (a 500 on exactly one call, a race between two requests).

Threads: route callbacks run on whichever thread made the request; ``lock`` guards the tables.
"""
import datetime as dt, itertools, json, re, threading, time
from urllib.parse import urlsplit, parse_qs
import requests
import responses
from golem_sync.yagna import YagnaClient, YagnaConfig

API = "http://127.0.0.1:7465"
KEY = "sk-TEST-4f1c2e9a8b7d6c5e"
PLATFORM = "erc20-hoodi-tglm"


def now():
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


OFFER_PROPS = {
    f"golem.com.payment.platform.{PLATFORM}.address": "0xprov",
    "golem.com.pricing.model": "linear",
    "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
    "golem.com.pricing.model.linear.coeffs": [0.1, 0.01, 0.0],
    "golem.node.id.name": "prov-1",
}


class FakeYagna:
    def __init__(self, rsps, *, poll_sleep=0.1):
        self.rsps = rsps
        self.lock = threading.Lock()
        self.poll_sleep = poll_sleep
        self.ids = itertools.count(1)
        self.agreements = {}      # id -> state
        self.agreement_info = {}  # id -> (demand id, provider id, creation timestamp)
        self.activities = {}      # id -> alive
        self.batches = {}         # batch id -> n commands
        self.demand_events = {}   # demand id -> list of pending events
        self.demands = {}         # demand id -> its body as GET /demands lists it, while subscribed
        self.demand_answer_lost = 0  # POST /demands creates, then the connection breaks before the answer
        self.debit_events, self.invoice_events, self.agreement_events = [], [], []
        self.docs = {}
        self.accept_fail = {}     # doc id -> remaining failures
        self.log = []             # (method, path)
        self.batch_delay = 0.0
        self.results_hook = None  # (results, request) -> the body of a batch-results poll (hostile providers)
        self.allocations = []
        self.released = []
        self.providers = ["0xprov"]
        self.approve = True
        self.max_wait = 2.0
        self.failures = []        # [method, path part, status, remaining, message]
        self.allocation_timeouts = {}  # allocation id -> its timeout as sent
        self.allocation_amounts = {}   # allocation id -> its total as sent
        self.down = threading.Event()  # set: every call fails as if yagna were not running (restart tests)
        self.lost_demands = set()      # demand ids a "restart" forgot: their events answer 404
        self.amend_supported = True
        self.allocation_answer_lost = 0  # POST /allocations creates, then the answer times out
        self.amended = []         # allocation ids extended by PUT
        self.accepted = {}        # doc id -> allocation id it was accepted from
        self.offer_props = dict(OFFER_PROPS)  # what every provider's proposals carry
        self.activity_agreement = {}  # activity id -> the agreement it was created on
        self.usage = {}           # activity id -> its reported usage vector (default [1.0, 2.0])
        self.usage_hang = None    # a threading.Event: GET .../usage waits for it (up to 10 s)
        self.command_hang = None  # a threading.Event: GET .../command (a pool's liveness probe) waits for it (up to 10 s)
        self._routes()

    # -- helpers -------------------------------------------------------------------------
    def fail_next(self, method, part, status=500, times=1, message="injected failure"):
        """Make the next ``times`` calls of ``method`` whose path contains ``part`` answer ``status``."""
        with self.lock:
            self.failures.append([method, part, status, times, message])

    def restart(self, down_sec=0.0):
        """Go away for ``down_sec`` (connections refused), then come back without the demand
        subscriptions, as yagna 0.17.6 does; agreements, activities and the allocation stay."""
        self.down.set()
        time.sleep(down_sec)
        with self.lock:
            self.lost_demands.update(self.demand_events)
            self.demands.clear()
        self.down.clear()

    def _injected(self, method, path):
        with self.lock:
            for rule in self.failures:
                if rule[0] == method and rule[1] in path and rule[3] > 0:
                    rule[3] -= 1
                    return rule[2], {"message": rule[4]}
        return None

    def _add(self, method, pattern, fn):
        regex = re.compile(re.escape(API) + pattern + r"(\?.*)?$")
        def cb(request):
            path = urlsplit(request.url).path
            if self.down.is_set():
                raise requests.ConnectionError("Connection refused (the fake yagna is down)")
            with self.lock:
                self.log.append((request.method, path))
            injected = self._injected(request.method, path)
            if injected is not None:
                return injected[0], {"Content-Type": "application/json"}, json.dumps(injected[1])
            m = regex.match(request.url)
            out = fn(request, *m.groups()[:-1])
            status, body = out if isinstance(out, tuple) else (200, out)
            return status, {"Content-Type": "application/json"}, "" if body is None else json.dumps(body)
        self.rsps.add_callback(method, regex, callback=cb)

    def _poll(self, queue):
        def fn(request):
            with self.lock:
                if queue:
                    items = list(queue); queue.clear(); return items
            time.sleep(self.poll_sleep)
            return []
        return fn

    def proposal(self, pid, state, issuer="0xprov", props=None):
        return {"eventType": "ProposalEvent", "eventDate": now(), "proposal": {
            "proposalId": pid, "issuerId": issuer, "state": state, "timestamp": now(),
            "properties": dict(props or self.offer_props), "constraints": "()"}}

    def calls(self, method=None, part=""):
        with self.lock:
            return [p for m, p in self.log if (method is None or m == method) and part in p]

    def push_debit_note(self, doc_id, agreement_id, amount="0.1"):
        self.docs[doc_id] = {"debitNoteId": doc_id, "issuerId": "0xprov", "recipientId": "0xreq", "payeeAddr": "0xprov",
                             "payerAddr": "0xreq", "paymentPlatform": PLATFORM, "timestamp": now(),
                             "agreementId": agreement_id, "activityId": "act", "totalAmountDue": amount, "status": "RECEIVED"}
        with self.lock:
            self.debit_events.append({"eventType": "DebitNoteReceivedEvent", "eventDate": now(), "debitNoteId": doc_id})

    def push_invoice(self, doc_id, agreement_id, amount="0.2"):
        self.docs[doc_id] = {"invoiceId": doc_id, "issuerId": "0xprov", "recipientId": "0xreq", "payeeAddr": "0xprov",
                             "payerAddr": "0xreq", "paymentPlatform": PLATFORM, "timestamp": now(),
                             "agreementId": agreement_id, "amount": amount, "paymentDueDate": now(), "status": "RECEIVED",
                             "activityIds": []}
        with self.lock:
            self.invoice_events.append({"eventType": "InvoiceReceivedEvent", "eventDate": now(), "invoiceId": doc_id})

    def push_terminated(self, agreement_id, message="provider quit"):
        """The provider terminated the agreement: yagna reports it Terminated and sends the event."""
        with self.lock:
            self.agreements[agreement_id] = "Terminated"
            self.agreement_events.append({"eventType": "AgreementTerminatedEvent", "eventDate": now(),
                                          "agreementId": agreement_id, "terminator": "Provider",
                                          "reason": {"message": message}})

    def _allocation(self, aid):
        amount = self.allocation_amounts.get(aid, "5")
        body = {"allocationId": aid, "address": "0xreq", "paymentPlatform": PLATFORM, "totalAmount": amount,
                "spentAmount": "0", "remainingAmount": amount, "timestamp": now()}
        if self.allocation_timeouts.get(aid):
            body["timeout"] = self.allocation_timeouts[aid]
        return body

    # -- routes --------------------------------------------------------------------------
    def _routes(self):
        A = self._add
        A("GET", r"/version/get", lambda r: {"current": {"version": "0.17.6", "name": "x", "seen": True}})
        A("GET", r"/me", lambda r: {"identity": "0xreq", "name": "req", "role": "manager"})
        P, M, AC = "/payment-api/v1", "/market-api/v1", "/activity-api/v1"

        def alloc(r):
            aid = f"al-{next(self.ids)}"
            self.allocations.append(aid)
            body = json.loads(r.body or b"{}")
            self.allocation_timeouts[aid] = body.get("timeout")
            self.allocation_amounts[aid] = body.get("totalAmount", "5")
            if self.allocation_answer_lost:
                self.allocation_answer_lost -= 1
                raise requests.exceptions.ReadTimeout("the answer was lost")  # yagna acted, we never hear
            return 201, self._allocation(aid)
        A("POST", P + r"/allocations", alloc)
        A("GET", P + r"/allocations", lambda r: [self._allocation(a) for a in self.allocations
                                                  if a not in self.released])

        def amend(r, aid):
            if not self.amend_supported:
                return 501, {"message": "not implemented"}
            if aid not in self.allocations or aid in self.released:
                return 404, {"message": f"Allocation {aid} not found"}
            self.amended.append(aid)
            self.allocation_timeouts[aid] = json.loads(r.body).get("timeout")
            return 200, self._allocation(aid)
        A("PUT", P + r"/allocations/([^/?]+)", amend)
        A("DELETE", P + r"/allocations/([^/?]+)", lambda r, a: (self.released.append(a), (200, None))[1])
        A("GET", P + r"/demandDecorations", lambda r: {"properties": [], "constraints": []})
        A("GET", P + r"/debitNoteEvents", self._poll(self.debit_events))
        A("GET", P + r"/invoiceEvents", self._poll(self.invoice_events))
        A("GET", M + r"/agreementEvents", self._poll(self.agreement_events))
        A("GET", P + r"/debitNotes/([^/?]+)", lambda r, d: self.docs[d])
        A("GET", P + r"/invoices/([^/?]+)", lambda r, d: self.docs[d])

        def accept(r, d):
            left = self.accept_fail.get(d, 0)
            if left:
                self.accept_fail[d] = left - 1
                return 500, {"message": "payment driver busy"}
            allocation = json.loads(r.body or b"{}").get("allocationId")
            if allocation not in self.allocations or allocation in self.released:
                return 400, {"message": f"Allocation {allocation} not found"}  # as yagna answers after expiry
            self.accepted[d] = allocation
            return 200, None
        A("POST", P + r"/debitNotes/([^/?]+)/accept", accept)
        A("POST", P + r"/invoices/([^/?]+)/accept", accept)
        A("POST", P + r"/debitNotes/([^/?]+)/reject", lambda r, d: (200, None))
        A("POST", P + r"/invoices/([^/?]+)/reject", lambda r, d: (200, None))

        def subscribe(r):
            did = f"dem-{next(self.ids)}"
            body = json.loads(r.body or b"{}")
            with self.lock:
                self.demand_events[did] = [self.proposal(f"init-{did}-{p}", "Initial", issuer=p) for p in self.providers]
                self.demands[did] = {"demandId": did, "requestorId": "0xreq", "timestamp": now(),
                                     "properties": _flat(body.get("properties", {})),
                                     "constraints": body.get("constraints", "")}
                lost, self.demand_answer_lost = self.demand_answer_lost, max(0, self.demand_answer_lost - 1)
            if lost:
                raise requests.ConnectionError("Connection reset by peer")  # yagna acted, we never hear
            return 201, did
        A("POST", M + r"/demands", subscribe)
        A("GET", M + r"/demands", lambda r: [dict(d) for d in list(self.demands.values())])

        def unsubscribe(r, did):
            with self.lock:
                self.demands.pop(did, None)
            return 204, None
        A("DELETE", M + r"/demands/([^/?]+)", unsubscribe)

        def demand_events(r, did):
            with self.lock:
                if did in self.lost_demands:
                    return 404, {"message": f"Subscription [{did}] not found. Could be unsubscribed."}
                q = self.demand_events.get(did, [])
                if q:
                    items = list(q); q.clear(); return items
            time.sleep(self.poll_sleep)
            return []
        A("GET", M + r"/demands/([^/?]+)/events", demand_events)

        def counter(r, did, pid):
            issuer = pid.rsplit("-", 1)[-1]
            with self.lock:
                self.demand_events.setdefault(did, []).append(self.proposal(f"draft-{did}-{issuer}", "Draft", issuer=issuer))
            return 201, f"counter-{pid}"
        A("POST", M + r"/demands/([^/?]+)/proposals/([^/?]+)", counter)
        A("POST", M + r"/demands/([^/?]+)/proposals/([^/?]+)/reject", lambda r, d, p: (204, None))

        def create_agreement(r):
            aid = f"agr-{next(self.ids)}"
            self.agreements[aid] = "Proposal"
            pid = json.loads(r.body)["proposalId"]  # "draft-<demand id>-<provider id>"
            demand_id, provider = pid[len("draft-"):].rsplit("-", 1) if pid.startswith("draft-") else ("d", "0xprov")
            self.agreement_info[aid] = (demand_id, provider, now())
            return 201, aid
        A("POST", M + r"/agreements", create_agreement)

        def list_agreements(r):  # ListAgreements: afterDate filter only
            after = parse_qs(urlsplit(r.url).query).get("afterDate", [""])[0]
            return [{"id": aid, "timestamp": ts, "role": "Requestor"}
                    for aid, (_, _, ts) in list(self.agreement_info.items()) if ts > after]
        A("GET", M + r"/agreements", list_agreements)

        def confirm(r, aid):
            self.agreements[aid] = "Pending"; return 204, None
        A("POST", M + r"/agreements/([^/?]+)/confirm", confirm)

        def wait(r, aid):
            if not self.approve:
                t = float(parse_qs(urlsplit(r.url).query)["timeout"][0])
                time.sleep(min(t, self.max_wait))
                return 408, {"message": "timeout"}
            self.agreements[aid] = "Approved"; return 204, None
        A("POST", M + r"/agreements/([^/?]+)/wait", wait)

        def get_agreement(r, aid):
            demand_id, provider, _ = self.agreement_info.get(aid, ("d", "0xprov", None))
            return {"agreementId": aid, "state": self.agreements.get(aid, "Terminated"), "timestamp": now(),
                    "validTo": now(), "demand": {"demandId": demand_id, "requestorId": "0xreq", "properties": {},
                                                  "constraints": "()", "timestamp": now()},
                    "offer": {"offerId": "o", "providerId": provider, "properties": {}, "constraints": "()",
                              "timestamp": now()}}
        A("GET", M + r"/agreements/([^/?]+)", get_agreement)

        def terminate(r, aid):
            self.agreements[aid] = "Terminated"; return 200, None
        A("POST", M + r"/agreements/([^/?]+)/terminate", terminate)

        def cancel(r, aid):
            self.agreements[aid] = "Cancelled"; return 200, None
        A("POST", M + r"/agreements/([^/?]+)/cancel", cancel)

        def create_activity(r):
            aid = f"act-{next(self.ids)}"
            self.activities[aid] = True
            self.activity_agreement[aid] = json.loads(r.body or b"{}").get("agreementId")
            return 201, {"activityId": aid}
        A("POST", AC + r"/activity", create_activity)

        def destroy(r, aid):
            self.activities[aid] = False; return 200, None
        A("DELETE", AC + r"/activity/([^/?]+)", destroy)

        def exec_(r, aid):
            n = len(json.loads(json.loads(r.body)["text"]))
            bid = f"batch-{next(self.ids)}"
            self.batches[bid] = (n, time.monotonic())
            return 200, bid
        A("POST", AC + r"/activity/([^/?]+)/exec", exec_)

        def results(r, aid, bid):
            n, t0 = self.batches[bid]
            if time.monotonic() - t0 < self.batch_delay:
                time.sleep(min(self.poll_sleep, self.batch_delay))
                return 408, {"message": "timeout"}
            listed = [{"index": i, "eventDate": now(), "result": "Ok", "stdout": "out\n", "stderr": "",
                       "isBatchFinished": i == n - 1} for i in range(n)]
            return self.results_hook(listed, r) if self.results_hook is not None else listed
        A("GET", AC + r"/activity/([^/?]+)/exec/([^/?]+)", results)
        def usage(r, a):
            if self.usage_hang is not None:
                self.usage_hang.wait(10)
            return {"currentUsage": list(self.usage.get(a, [1.0, 2.0])), "timestamp": 1}
        A("GET", AC + r"/activity/([^/?]+)/usage", usage)
        A("GET", AC + r"/activity/([^/?]+)/state", lambda r, a: {"state": ["Ready", None]})

        def running_command(r, a):
            if self.command_hang is not None:
                self.command_hang.wait(10)
            return []
        A("GET", AC + r"/activity/([^/?]+)/command", running_command)


def _flat(properties, prefix=""):
    """Properties with nested objects flattened to dotted keys, as yagna 0.17.6 lists a demand's."""
    flat = {}
    for name, value in properties.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def client():
    return YagnaClient(YagnaConfig(app_key=KEY, api_url=API, retries=0, backoff=0.01))


PACKAGE = {"image_hash": "abc", "image_url": "http://x/img"}
