"""Consent: the hash-chained ledger of choices, decisions from it, and Global Privacy Control."""

from pledge.consent.banner import BannerCors
from pledge.consent.banner import banner as banner_routes
from pledge.consent.routes import AUDIENCE_MAX_BYTES
from pledge.consent.routes import api as api_routes
from pledge.consent.routes import pages as page_routes
from pledge.consent.rules import Action, Choice, ConsentEvent, Decision, DecisionTable, Method, fold
from pledge.consent.service import ChoiceToRecord, ConsentLedger, ConsentRefused, RepromptBlocked

__all__ = [
    "AUDIENCE_MAX_BYTES",
    "Action",
    "BannerCors",
    "Choice",
    "ChoiceToRecord",
    "ConsentEvent",
    "ConsentLedger",
    "ConsentRefused",
    "Decision",
    "DecisionTable",
    "Method",
    "RepromptBlocked",
    "api_routes",
    "banner_routes",
    "fold",
    "page_routes",
]
