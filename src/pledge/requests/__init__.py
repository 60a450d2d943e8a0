"""Privacy requests: access, portability, correction, deletion and opt-outs, from intake and
verification to fulfilment, with their legal deadlines and the records kept."""

from pledge.requests.console import pages as console_routes
from pledge.requests.fulfilment import NOTIFY_RECIPIENT, Fulfilment
from pledge.requests.routes import api as api_routes
from pledge.requests.rules import (
    Channel,
    Deadlines,
    Regime,
    Status,
    TransitionRefused,
    add_business_days,
    deadlines,
    regime_for,
)
from pledge.requests.service import (
    DECLARATION,
    FULFIL,
    PRIVACY_REQUESTS,
    Agent,
    Correction,
    Details,
    ExtensionRefused,
    Intake,
    IntakeRefused,
    RequestDesk,
    RequestNotFound,
    RequestRecord,
    RequestView,
    StaffTextRefused,
    TransitionView,
    VerificationResult,
)

__all__ = [
    "DECLARATION",
    "FULFIL",
    "NOTIFY_RECIPIENT",
    "PRIVACY_REQUESTS",
    "Agent",
    "Channel",
    "Correction",
    "Deadlines",
    "Details",
    "ExtensionRefused",
    "Fulfilment",
    "Intake",
    "IntakeRefused",
    "Regime",
    "RequestDesk",
    "RequestNotFound",
    "RequestRecord",
    "RequestView",
    "StaffTextRefused",
    "Status",
    "TransitionRefused",
    "TransitionView",
    "VerificationResult",
    "add_business_days",
    "api_routes",
    "console_routes",
    "deadlines",
    "regime_for",
]
