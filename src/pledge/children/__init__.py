"""Children under 13: the neutral age screen, parental consent, and children found later."""

from pledge.children.routes import api as api_routes
from pledge.children.rules import RETRY_COOKIE, AgeBand, Screened
from pledge.children.service import AgeScreen, ScreenAnswer, UnknownCollectionPoint

__all__ = [
    "RETRY_COOKIE",
    "AgeBand",
    "AgeScreen",
    "ScreenAnswer",
    "Screened",
    "UnknownCollectionPoint",
    "api_routes",
]
