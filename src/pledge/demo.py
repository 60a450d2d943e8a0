"""Demo data for `pledge demo`: the reference policy, demo people collected through the vault,
and an API key to try the API with. Every value goes through the same services as real data."""

from __future__ import annotations

import dataclasses
import email.policy
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesParser
from typing import Any

from pledge.apikeys import FIXED_SCOPES, create_api_key, list_api_keys, revoke_api_key
from pledge.config import REFERENCE_POLICY
from pledge.policy import PublishedVersion, load_policy_file, publish_policy
from pledge.runtime import Runtime
from pledge.staff import Enrolment, Role, StaffDirectory
from pledge.vault import IdentityKind, PersonalDataScanner, Source, Submission, Vault

DEMO_ACTOR = "pledge demo"
DEMO_KEY_NAME = "demo key"

DEMO_PEOPLE: tuple[dict[str, str], ...] = (
    {"name": "Maya Okafor", "email": "maya.okafor@example.com", "phone": "+1 310 555 0147"},
    {
        "name": "Tomás Villanueva",
        "email": "tomas.villanueva@example.net",
        "phone": "+1 213 555 0188",
    },
    {"name": "Priya Raman", "email": "priya.raman@example.org", "phone": "+1 415 555 0123"},
    {"name": "Jonah Whitfield", "email": "jonah.whitfield@example.com", "phone": "+1 646 555 0110"},
    {"name": "Aiko Tanabe", "email": "aiko.tanabe@example.net", "phone": "+1 206 555 0175"},
    {"name": "Grace Nwosu", "email": "grace.nwosu@example.org", "phone": "+1 312 555 0139"},
)
"""Made-up people with reserved example domains and 555-01xx numbers."""


def demo_submissions() -> list[Submission]:
    """What the demo people did: registered, ordered, subscribed, commented, called support."""
    maya, tomas, priya, jonah, aiko, grace = DEMO_PEOPLE
    return [
        Submission(
            "registration",
            {
                "name": maya["name"],
                "email": maya["email"],
                "password": "correct horse battery staple",
                "date_of_birth": "1988-04-12",
                "phone": maya["phone"],
            },
            Source.WEB_FORM,
        ),
        Submission(
            "purchase_order",
            {
                "name": maya["name"],
                "email": maya["email"],
                "shipping_address": "1200 Harbor Blvd, Santa Monica, CA 90401",
                "billing_address": "1200 Harbor Blvd, Santa Monica, CA 90401",
                "card": "4111 1111 1111 1111",
                "order": "Aura Carver frame, gravel",
            },
            Source.WEB_FORM,
        ),
        Submission(
            "newsletter",
            {"email": tomas["email"], "name": tomas["name"], "age_range": "35-44"},
            Source.WEB_FORM,
        ),
        Submission(
            "registration",
            {
                "name": priya["name"],
                "email": priya["email"],
                "password": "tr0ub4dor&3",
                "date_of_birth": "1979-11-30",
                "company": "Raman Studio",
                "job_title": "Photographer",
            },
            Source.APP,
        ),
        Submission(
            "comment",
            {
                "display_name": "Priya",
                "email": priya["email"],
                "comment": (
                    "The frame is lovely! If the matte version ships, mail me at "
                    f"{priya['email']} or call {priya['phone']}."
                ),
            },
            Source.WEB_FORM,
        ),
        Submission(
            "support_contact",
            {
                "name": jonah["name"],
                "phone": jonah["phone"],
                "correspondence": (
                    "Called: the frame shows a blank screen after the update; "
                    "walked through a reset."
                ),
            },
            Source.STAFF_ENTRY,
            identity=(IdentityKind.PHONE, jonah["phone"]),
            entered_by="sam (support)",
        ),
        Submission(
            "social_login",
            {
                "account": "example-social:aiko.t",
                "email": aiko["email"],
                "friends": "12 friends shared",
            },
            Source.SOCIAL_NETWORK,
        ),
        Submission(
            "promotion",
            {
                "name": grace["name"],
                "email": grace["email"],
                "age_range": "25-34",
                "gender": "female",
                "zip_code": "60601",
                "industry": "Education",
                "income_level": "50,000-75,000",
            },
            Source.WEB_FORM,
        ),
        Submission(
            "frame_app",
            {"frame_id": "AURA-CV-0042-7731", "usage": "slideshow 6h/day; firmware 4.2.1"},
            Source.DEVICE,
            identity=(IdentityKind.EMAIL, maya["email"]),
        ),
    ]


DEMO_ADMIN = "demo-admin"
"""The demo's console account (role admin); its password and TOTP secret change at every start."""


@dataclass(frozen=True)
class DemoSummary:
    """What loading the demo did."""

    policy: PublishedVersion
    policy_created: bool
    people_created: int
    api_key: str
    console: Enrolment
    """The demo admin's console account, with a fresh password and TOTP secret."""
    console_password: str


def load_demo(runtime: Runtime) -> DemoSummary:
    """Publish the reference policy, collect the demo people once, and issue a fresh demo key."""
    outcome = publish_policy(
        runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by=DEMO_ACTOR
    )
    vault = Vault(runtime.sessions, runtime.keyring, PersonalDataScanner())
    created = 0
    if vault.resolve(IdentityKind.EMAIL, DEMO_PEOPLE[0]["email"], actor=DEMO_ACTOR) is None:
        # The demo people are adults who passed the age screen of each sign-up.
        screened = [
            dataclasses.replace(item, age_pass=vault.age_pass(item.collection_point))
            for item in demo_submissions()
        ]
        created = sum(result.created for result in vault.collect(screened, actor=DEMO_ACTOR))
    for key in list_api_keys(runtime.sessions):
        if key.name == DEMO_KEY_NAME and not key.revoked:
            revoke_api_key(runtime.sessions, key.id, revoked_by=DEMO_ACTOR)
    _, token = create_api_key(
        runtime.sessions,
        name=DEMO_KEY_NAME,
        scopes=[*FIXED_SCOPES, "read:*"],
        created_by=DEMO_ACTOR,
    )
    password = secrets.token_urlsafe(12)
    staff = StaffDirectory(sessions=runtime.sessions, keyring=runtime.keyring, issuer="Pledge demo")
    if any(member.username == DEMO_ADMIN for member in staff.members()):
        enrolment = staff.reset(DEMO_ADMIN, password, actor=DEMO_ACTOR)
    else:
        enrolment = staff.add(DEMO_ADMIN, Role.ADMIN, password, actor=DEMO_ACTOR)
    return DemoSummary(outcome.version, outcome.created, created, token, enrolment, password)


class DemoMailbox:
    """A local SMTP server for `pledge demo` that prints what Pledge sends (codes, marketing
    mail with its unsubscribe link) to the terminal, so the mail flows can be tried without a
    mail server. Demo only: it prints addresses, which Pledge's logs never do."""

    def __init__(self, host: str, port: int, printer: Callable[[str], None]) -> None:
        from aiosmtpd.controller import Controller  # noqa: PLC0415 - a demo-only dependency

        self._printer = printer
        self._controller = Controller(self, hostname=host, port=port)
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's own chatter

    async def handle_DATA(  # noqa: N802 - the name aiosmtpd calls
        self, _server: object, _session: object, envelope: Any
    ) -> str:
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.original_content)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        lines = [
            "-" * 72,
            f"demo mailbox: to {message['To']}: {message['Subject']}",
            *(
                [f"List-Unsubscribe: {message['List-Unsubscribe']}"]
                if message["List-Unsubscribe"]
                else []
            ),
            text.rstrip(),
            "-" * 72,
        ]
        self._printer("\n".join(lines))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        """Listen until `stop`."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()
