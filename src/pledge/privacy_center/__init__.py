"""The privacy center: people prove an e-mail address with a one-time code, then see and
change their choices (marketing e-mail and post, sale and sharing, cookies)."""

from pledge.privacy_center.routes import pages as page_routes
from pledge.privacy_center.service import PreferenceCenter, ShownChoice, Visitor

__all__ = ["PreferenceCenter", "ShownChoice", "Visitor", "page_routes"]
