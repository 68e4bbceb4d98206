"""What the worker function sees: the WorkContext, batches and results."""
from .batch import Batch
from .context import ProviderInfo, WorkContext
from .result import Result

__all__ = ["Batch", "ProviderInfo", "WorkContext", "Result"]
