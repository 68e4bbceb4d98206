"""The devnet provider agent: one provider identity on the devnet's yagna node.

Rooms:

- :mod:`.agent`: :class:`ProviderAgent`, which wires the others together and owns the threads;
- :mod:`.spec`: what a provider offers and how it misbehaves (:class:`ProviderSpec`,
  :class:`ProviderFaults`), and the pure offer / counter-offer / pricing functions;
- :mod:`.market`: the offer, negotiation, agreement approval and agreement events;
- :mod:`.activity`: activity events (an exe-unit per activity);
- :mod:`.payments`: debit notes and invoices; :mod:`.scheduler`: the payments thread's timer queue;
- :mod:`.rules`: ya-provider's agreement rules (one activity at a time, single-activity close,
  idle-agreement timeout, expiration) and the termination reasons it gives, as pure functions;
- :mod:`.rest`: the provider's own tiny REST client (never golem_sync's requestor client);
- :mod:`.state`: the agent's records and the ``*Info`` snapshots it hands out.

Exe-units run commands on the host, unsandboxed: this is a test network.
"""
from __future__ import annotations

from .agent import ProviderAgent
from .spec import ProviderFaults, ProviderSpec
from .state import ActivityInfo, AgreementInfo, DebitNoteInfo, InvoiceInfo

__all__ = [
    "ProviderAgent",
    "ProviderSpec",
    "ProviderFaults",
    "AgreementInfo",
    "ActivityInfo",
    "DebitNoteInfo",
    "InvoiceInfo",
]
