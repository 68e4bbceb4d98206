"""What the worker function sees: the WorkContext, batches, remote processes and results."""
from .batch import Batch
from .context import ProviderInfo, WorkContext
from .costs import AgreementCost, CostSummary
from .process import RemoteProcess
from .result import Result

__all__ = ["Batch", "ProviderInfo", "WorkContext", "Result", "RemoteProcess", "CostSummary", "AgreementCost"]
