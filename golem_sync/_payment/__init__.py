"""Payment: the network's allocation and the processing of debit notes and invoices."""
from .allocation import AllocationKeeper, create_allocation, demand_decorations
from .processor import PaymentProcessor

__all__ = ["AllocationKeeper", "create_allocation", "demand_decorations", "PaymentProcessor"]
