"""Mail: transactional and marketing e-mail over SMTP, decided right before sending, with
one-click unsubscribe (RFC 8058) and a suppression list."""

from pledge.mail.routes import api as api_routes
from pledge.mail.routes import pages as page_routes
from pledge.mail.rules import MARKETING_EMAIL, ONE_CLICK_BODY, MessageKind, MessageStatus
from pledge.mail.service import DELIVER, Mailer, MessageInFlight, MessageNotFound, MessageView
from pledge.mail.smtp import SmtpRelay

__all__ = [
    "DELIVER",
    "MARKETING_EMAIL",
    "ONE_CLICK_BODY",
    "Mailer",
    "MessageInFlight",
    "MessageKind",
    "MessageNotFound",
    "MessageStatus",
    "MessageView",
    "SmtpRelay",
    "api_routes",
    "page_routes",
]
