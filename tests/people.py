"""Ada, a person the vault holds, and helpers to read what the request desk mailed; the
`person` fixture (tests/conftest.py) collects her."""

from __future__ import annotations

import dataclasses
import re
from email.message import EmailMessage
from typing import TYPE_CHECKING

from pledge.app import Services
from pledge.children import ParentalConsents
from pledge.vault import IdentityKind, Source, Submission, Vault
from pledge.vault.rules import normalize_identity

if TYPE_CHECKING:  # tests.conftest imports this module
    from tests.conftest import SmtpInbox

ADDRESS = "ada@example.com"
NAME = "Ada Lovelace"
PHONE = "+1 310 555 0100"
PASSWORD = "correct horse battery staple"
BIRTHDAY = "1990-12-10"


def collect_ada(services: Services) -> str:
    """Ada: registered (name, e-mail, password) and wrote to support (with a phone number)."""
    (registered,) = services.vault.collect(
        screened(
            services.vault,
            Submission(
                "registration",
                {
                    "name": NAME,
                    "email": ADDRESS,
                    "password": PASSWORD,
                    "date_of_birth": BIRTHDAY,
                },
                Source.WEB_FORM,
            ),
        ),
        actor="tests",
    )
    services.vault.collect(
        [
            Submission(
                "support_contact",
                {"name": NAME, "email": ADDRESS, "phone": PHONE, "correspondence": "It flickers."},
                Source.WEB_FORM,
                subject_id=registered.subject_id,
            )
        ],
        actor="tests",
    )
    return registered.subject_id


def email_index(services: Services, address: str) -> str:
    """The blind index a privacy-center session holds once `address` was proven."""
    kind = IdentityKind.EMAIL
    return services.vault.keyring.blind_index(kind.value, normalize_identity(kind, address))


def body(message: EmailMessage) -> str:
    """A message's text part."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def mail_to(inbox: SmtpInbox, address: str) -> list[str]:
    """The text of every message `address` received, oldest first."""
    return [body(m) for m in inbox.messages if m["To"] == address]


def package_token(text: str) -> str:
    """The download token in an answer's link."""
    match = re.search(r"/package\?token=([A-Za-z0-9_-]{43})", text)
    assert match, text
    return match[1]


def screened(vault: Vault, *submissions: Submission) -> list[Submission]:
    """`submissions` with the pass the age screen gives an adult, for points that screen ages
    (as an integrating service's sign-up would carry it)."""
    return [
        dataclasses.replace(item, age_pass=vault.age_pass(item.collection_point))
        for item in submissions
    ]


def child_token(consents: ParentalConsents, consent_id: str, parent_token: str) -> str:
    """The token of the link a parent hands the child, once they consented."""
    return consents.child_link(consent_id, parent_token).split("child=")[1]
