"""The market: building the demand, judging proposals, negotiating an agreement."""
from .demand import DemandSpec, build_demand
from .proposals import ProposalView, default_scorer, proposal_problem

__all__ = ["DemandSpec", "build_demand", "ProposalView", "default_scorer", "proposal_problem"]
