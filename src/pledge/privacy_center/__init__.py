"""The privacy center: people prove an e-mail address with a one-time code, then see and
change their choices (marketing e-mail and post, sale and sharing, cookies) and make, confirm
and follow privacy requests."""

from pledge.privacy_center.children_pages import pages as children_page_routes
from pledge.privacy_center.request_pages import pages as request_page_routes
from pledge.privacy_center.routes import pages as page_routes
from pledge.privacy_center.service import PreferenceCenter, ShownChoice, Visitor

__all__ = [
    "PreferenceCenter",
    "ShownChoice",
    "Visitor",
    "children_page_routes",
    "page_routes",
    "request_page_routes",
]
