"""Payment: the network's allocation and the processing of debit notes and invoices."""
from .allocation import create_allocation, demand_decorations
from .processor import PaymentProcessor

__all__ = ["create_allocation", "demand_decorations", "PaymentProcessor"]
