"""Consent: the hash-chained ledger of choices, decisions from it, and Global Privacy Control."""

from pledge.consent.banner import BannerCors
from pledge.consent.banner import banner as banner_routes
from pledge.consent.routes import AUDIENCE_MAX_BYTES
from pledge.consent.routes import api as api_routes
from pledge.consent.routes import pages as page_routes
from pledge.consent.rules import (
    AFFIRMATIVE_OPT_IN,
    Action,
    Choice,
    ConsentEvent,
    Decision,
    DecisionTable,
    Method,
    fold,
)
from pledge.consent.service import (
    ChoiceRefusedAt,
    ChoiceToRecord,
    ConsentLedger,
    ConsentRefused,
    RepromptBlocked,
)
from pledge.consent.visitors import (
    CookieChoices,
    PolicyVersionChanged,
    cookie_choices_of,
    record_cookie_choices,
)

__all__ = [
    "AFFIRMATIVE_OPT_IN",
    "AUDIENCE_MAX_BYTES",
    "Action",
    "BannerCors",
    "Choice",
    "ChoiceRefusedAt",
    "ChoiceToRecord",
    "ConsentEvent",
    "ConsentLedger",
    "ConsentRefused",
    "CookieChoices",
    "Decision",
    "DecisionTable",
    "Method",
    "PolicyVersionChanged",
    "RepromptBlocked",
    "api_routes",
    "banner_routes",
    "cookie_choices_of",
    "fold",
    "page_routes",
    "record_cookie_choices",
]
