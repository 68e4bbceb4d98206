"""The market: building the demand, judging proposals, negotiating an agreement, scanning offers."""
from .demand import DemandSpec, build_demand
from .proposals import ProposalView, Reason, default_scorer, proposal_problems

__all__ = ["DemandSpec", "build_demand", "ProposalView", "Reason", "default_scorer", "proposal_problems"]
