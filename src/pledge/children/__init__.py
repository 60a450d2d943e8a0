"""Children under 13: the neutral age screen, parental consent, and children found later."""

from pledge.children.consents import (
    CHILD_ACCOUNT,
    EVIDENCE_MAX_BYTES,
    ConsentNotFound,
    ConsentRefusedHere,
    ConsentView,
    ParentalConsents,
    TooManyAsks,
)
from pledge.children.console import pages as console_routes
from pledge.children.pages import pages as page_routes
from pledge.children.routes import api as api_routes
from pledge.children.rules import RETRY_COOKIE, AgeBand, Screened
from pledge.children.service import AgeBands, AgeScreen, ScreenAnswer, UnknownCollectionPoint

__all__ = [
    "CHILD_ACCOUNT",
    "EVIDENCE_MAX_BYTES",
    "RETRY_COOKIE",
    "AgeBand",
    "AgeBands",
    "AgeScreen",
    "ConsentNotFound",
    "ConsentRefusedHere",
    "ConsentView",
    "ParentalConsents",
    "ScreenAnswer",
    "Screened",
    "TooManyAsks",
    "UnknownCollectionPoint",
    "api_routes",
    "console_routes",
    "page_routes",
]
