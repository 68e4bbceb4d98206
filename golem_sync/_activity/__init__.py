"""Activities: create one on an agreement, execute ExeScript batches, read results, destroy it."""
from .activity import Activity

__all__ = ["Activity"]
