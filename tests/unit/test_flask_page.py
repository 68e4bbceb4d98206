"""The Flask example's page and its JSON list, on a memory store with no yagna: every job of the
store listed newest first with state, progress and provider; costs only for this worker's jobs;
the page itself carries no job data (the script fills it in as text)."""
from __future__ import annotations

import importlib
import json
import os
import sys
from decimal import Decimal

import pytest

from golem_sync import Progress
from golem_sync._work.costs import AgreementCost, CostSummary
from golem_sync.store import MemoryJobStore

pytest.importorskip("flask")
EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


class FakeNetwork:
    def __init__(self, rows):
        self.rows = rows

    def cost_summary(self):
        return CostSummary(rows=self.rows)


@pytest.fixture
def app(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    module = importlib.import_module("flask_app")
    store = MemoryJobStore()
    row = AgreementCost(agreement_id="agr-1", job_id="mine", provider_id="0xp", provider_name="prov-1",
                        activities=1, usage={}, estimated=0.25, accepted=Decimal("0.2"))
    monkeypatch.setattr(module, "_store", store)
    monkeypatch.setattr(module, "_golem", FakeNetwork([row]))
    yield module, store
    store.close()
    sys.modules.pop("flask_app", None)


def test_the_list_has_every_job_with_progress_and_this_workers_costs(app):
    module, store = app
    store.create("theirs", state="pending", provider="<b>prov-2</b>")
    store.update("theirs", progress=Progress.create(0.5, "<i>half</i>", {"step": 5}).to_json())
    store.create("mine", state="done", provider="prov-1", result=json.dumps("<script>x</script>"))
    answer = module.app.test_client().get("/api/jobs")
    assert answer.status_code == 200
    jobs = {job["id"]: job for job in answer.get_json()["jobs"]}
    assert [job["id"] for job in answer.get_json()["jobs"]] == ["mine", "theirs"]  # newest first
    theirs, mine = jobs["theirs"], jobs["mine"]
    assert (theirs["state"], theirs["provider"], theirs["cost"]) == ("pending", "<b>prov-2</b>", None)
    assert theirs["progress"]["fraction"] == 0.5 and theirs["progress"]["message"] == "<i>half</i>"
    assert theirs["progress"]["data"] == {"step": 5}
    assert mine["cost"] == {"estimated": 0.25, "accepted": 0.2}
    assert mine["result"] == "<script>x</script>" and mine["progress"] is None


def test_the_page_is_static_and_puts_values_in_as_text(app):
    module, store = app
    store.create("job-<img src=x>", state="pending")
    page = module.app.test_client().get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "job-<img" not in html and "const POLL_MS = 1000;" in html
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html  # values only via textContent


def test_long_results_and_errors_are_cut(app):
    module, store = app
    store.create("big", state="rejected", error="E" * 5000)
    job = module.app.test_client().get("/api/jobs").get_json()["jobs"][0]
    assert len(job["error"]) == module.SHOWN_CHARS + 1 and job["error"].endswith("…")
