"""Checks, through yagna's REST API with plain requests, that a network left nothing open."""
from __future__ import annotations

from typing import Iterable, List

import requests


class YagnaProbe:
    """A tiny independent REST reader (no golem_sync code) for asserting what yagna holds."""

    def __init__(self, api_url: str, app_key: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {app_key}"

    def get(self, path: str, **params: object) -> requests.Response:
        return self.session.get(self.api_url + path, params=params, timeout=10)

    def agreement_state(self, agreement_id: str) -> str:
        response = self.get(f"/market-api/v1/agreements/{agreement_id}")
        response.raise_for_status()
        return str(response.json()["state"])

    def activity_state(self, activity_id: str) -> str:
        response = self.get(f"/activity-api/v1/activity/{activity_id}/state")
        if response.status_code == 404:
            return "Gone"
        response.raise_for_status()
        return str(response.json()["state"][0])

    def invoices_for(self, agreement_ids: Iterable[str]) -> List[dict]:
        wanted = set(agreement_ids)
        response = self.get("/payment-api/v1/invoices")
        response.raise_for_status()
        return [inv for inv in response.json() if inv["agreementId"] in wanted]

    def allocation_exists(self, allocation_id: str) -> bool:
        return self.get(f"/payment-api/v1/allocations/{allocation_id}").status_code == 200

    def assert_clean(self, agreement_ids: Iterable[str], activity_ids: Iterable[str], allocation_id: str | None,
                     *, invoiced: Iterable[str] = ()) -> None:
        """No agreement still Approved/Pending, no activity alive, invoices accepted, allocation released."""
        for agreement_id in agreement_ids:
            assert self.agreement_state(agreement_id) in ("Terminated", "Cancelled", "Rejected", "Expired"), agreement_id
        for activity_id in activity_ids:
            assert self.activity_state(activity_id) in ("Terminated", "Gone"), activity_id
        invoices = {inv["agreementId"]: inv for inv in self.invoices_for(invoiced)}
        for agreement_id in invoiced:
            assert agreement_id in invoices, f"no invoice for {agreement_id}"
            assert invoices[agreement_id]["status"] in ("ACCEPTED", "SETTLED"), invoices[agreement_id]
        if allocation_id is not None:
            assert not self.allocation_exists(allocation_id), "allocation not released"
