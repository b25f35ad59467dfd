"""Human handoff: clinician accounts, the queue and live takeover of patient sessions."""

from healtrace.handoff.accounts import ClinicianInfo, ClinicianStore
from healtrace.handoff.desk import HandoffDesk, HandoffInfo, QueueFeed

__all__ = ["ClinicianInfo", "ClinicianStore", "HandoffDesk", "HandoffInfo", "QueueFeed"]
