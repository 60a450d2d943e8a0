"""Pure rules of mail: what a marketing message must carry, and how its unsubscribe link works."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import html
import secrets
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from pledge.consent.rules import AFFIRMATIVE_OPT_IN, Action, ConsentEvent
from pledge.policy.document import Organization

MARKETING_EMAIL = "marketing.communications.email"
"""The purpose every marketing message is decided against, right before it is sent."""

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
"""The body of an RFC 8058 one-click unsubscribe POST (and the List-Unsubscribe-Post value)."""

UNSUBSCRIBE_NOTICE = "One-click unsubscribe from marketing e-mail (RFC 8058)."
"""What the ledger's proof hash of a one-click withdrawal is computed from."""


class MessageKind(enum.StrEnum):
    """Marketing mail needs the person's consent; transactional mail serves a request of theirs."""

    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class MessageStatus(enum.StrEnum):
    """What became of a message."""

    QUEUED = "queued"
    SENDING = "sending"
    """Claimed by one worker, which is sending it: no other may. A message stays here if that
    worker stopped between claiming and recording the outcome (whether the SMTP server got it
    is then unknown, so it is never sent again)."""
    SENT = "sent"
    WITHHELD = "withheld"
    """Not sent: the decision refused it, or the address is suppressed."""


def suppression_lifted(events: Iterable[ConsentEvent], suppressed_at: dt.datetime) -> bool:
    """Whether the person's consent events lift the suppression of their address made at
    `suppressed_at` (by an unsubscribe): only a fresh, affirmative opt-in to marketing e-mail
    after it (`AFFIRMATIVE_OPT_IN`), not withdrawn since, does. A grant by any other method, or
    one older than the suppression, leaves the address suppressed."""
    lifted = False
    for event in sorted(events, key=lambda e: e.seq):
        if event.purpose != MARKETING_EMAIL or event.at <= suppressed_at:
            continue
        if event.action is Action.WITHDRAW:
            lifted = False
        elif event.method in AFFIRMATIVE_OPT_IN:
            lifted = True
    return lifted


def new_token() -> tuple[str, str]:
    """An unguessable unsubscribe token (256 bits) and the SHA-256 under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    """The stored form of a token: a leaked table gives no working link."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def notice_sha256(text: str) -> str:
    """The proof hash the ledger keeps of a notice text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def marketing_message(
    *,
    sender: str,
    to: str,
    subject_line: str,
    text: str,
    unsubscribe_url: str,
    organization: Organization,
) -> EmailMessage:
    """A marketing message as the law and the mailbox providers want it: List-Unsubscribe with
    an HTTPS link and List-Unsubscribe-Post for one click (RFC 8058), and in the body a visible
    unsubscribe link and the organization's postal address (CAN-SPAM)."""
    name = organization.trade_name or organization.legal_name
    address = ", ".join(organization.postal_address.lines())
    footer = (
        f"You get this e-mail because you asked {name} for news by e-mail.\n"
        f"Unsubscribe with one click: {unsubscribe_url}\n"
        f"{organization.legal_name}, {address}"
    )
    message = _message(sender, to, subject_line)
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = ONE_CLICK_BODY
    message.set_content(f"{text}\n\n-- \n{footer}\n")
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())
    link = html.escape(unsubscribe_url, quote=True)
    message.add_alternative(
        "<!doctype html><html><body>"
        f'{paragraphs}<hr><p style="font-size:small">You get this e-mail because you asked '
        f'{html.escape(name)} for news by e-mail. <a href="{link}">Unsubscribe</a><br>'
        f"{html.escape(organization.legal_name)}, {html.escape(address)}</p></body></html>",
        subtype="html",
    )
    return message


def transactional_message(*, sender: str, to: str, subject_line: str, text: str) -> EmailMessage:
    """A message answering the person's own request (a code, a receipt): no marketing parts."""
    message = _message(sender, to, subject_line)
    message.set_content(text)
    return message


def _message(sender: str, to: str, subject_line: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject_line
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=_domain(sender))
    return message


def _domain(sender: str) -> str:
    address = sender.rsplit("<", 1)[-1].rstrip(">")
    return address.rsplit("@", 1)[-1] or "localhost"
