"""Requests carried out in the vault and in the sample shop's database (SQLite, PostgreSQL and
MariaDB), through the request desk and its jobs: who is looked for, what proves a person the
shop alone knows, and a deletion that survives a crash half-way."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from pledge.app import Services, build_services
from pledge.jobs.tables import Job
from pledge.policy.document import RequestKind
from pledge.requests import NOTIFY_RECIPIENT, Channel, Correction, Intake, Status
from pledge.runtime import Runtime
from pledge.vault import IdentityKind, Source, SubjectErased, Submission
from pledge.vault.rules import normalize_identity
from tests.conftest import SmtpInbox
from tests.integration.conftest import (
    SHOP_FILE,
    URL_ENV,
    Shop,
    customers,
    orders,
    support_tickets,
)
from tests.people import screened

ALICE = "alice@example.com"
BOBS_PHONE = "+14155550102"


@pytest.fixture
def shop_services(
    mail_runtime: Runtime, services: Services, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    """Every capability, with the sample shop as a connected database."""
    monkeypatch.setenv(URL_ENV, shop.url)
    settings = mail_runtime.settings.model_copy(update={"datasets_file": SHOP_FILE})
    wired = build_services(dataclasses.replace(mail_runtime, settings=settings))
    yield wired
    if wired.fulfilment.connected is not None:
        wired.fulfilment.connected.close()


def index_of(services: Services, address: str) -> str:
    kind = IdentityKind.EMAIL
    return services.vault.keyring.blind_index(kind.value, normalize_identity(kind, address))


def alice_in_the_vault(services: Services, phone: str) -> str:
    """Alice signed up, typing `phone` as her number (perhaps someone else's)."""
    (result,) = services.vault.collect(
        [
            Submission(
                "support_contact",
                {"name": "Alice", "email": ALICE, "phone": phone, "correspondence": "Hi."},
                Source.WEB_FORM,
            )
        ],
        actor="tests",
    )
    return result.subject_id


def ask(services: Services, kind: RequestKind, **extra: Any) -> str:
    return services.requests.submit(
        Intake(kind=kind, channel=Channel.API, residence="US-CA", email=ALICE, **extra),
        actor="tests",
    )


def test_only_the_proven_address_finds_rows_in_the_shop_never_a_typed_phone_number(
    shop_services: Services, shop: Shop
) -> None:
    # Alice typed Bob's phone number into a form. Her deletion must not touch Bob.
    alice_in_the_vault(shop_services, BOBS_PHONE)
    desk = shop_services.requests
    request_id = ask(shop_services, RequestKind.DELETION)
    desk.verify(
        request_id,
        email_index=index_of(shop_services, ALICE),
        data_points={"user.name": "alice"},
    )
    desk.approve(request_id, actor="staff:grace")
    shop_services.jobs.drain()

    assert desk.get(request_id).status is Status.COMPLETED
    bob = shop.row(customers, 2)
    assert bob is not None
    assert (bob["email"], bob["phone"], bob["full_name"]) == (
        "bob@example.com",
        BOBS_PHONE,
        "Bob",
    )
    assert shop.row(support_tickets, 2000) is not None
    alice = shop.row(customers, 1)
    assert alice is not None
    assert alice["email"] != ALICE
    assert alice["full_name"] is None
    assert shop.row(support_tickets, 1000) is None
    assert shop.row(orders, 10) is not None  # tax records are kept ...
    outcome = desk.get(request_id).outcome
    assert outcome is not None
    kept = {item["where"] for item in outcome["retained"]}
    assert kept == {"shop.orders", "shop.order_lines"}  # ... and named in the answer


def test_a_person_only_the_shop_knows_proves_who_they_are_with_what_the_shop_holds(
    shop_services: Services, shop: Shop, inbox: SmtpInbox
) -> None:
    desk = shop_services.requests
    request_id = ask(shop_services, RequestKind.ACCESS)
    proven = index_of(shop_services, ALICE)
    # The address and a signature are not enough: the shop holds Alice's name and phone.
    wrong = desk.verify(request_id, email_index=proven, data_points={}, declaration_by="Alice")
    assert wrong.status is Status.AWAITING_VERIFICATION
    assert wrong.attempts_left == 2
    right = desk.verify(
        request_id,
        email_index=proven,
        data_points={"user.name": "ALICE", "user.contact.phone_number": "(415) 555-0101"},
        declaration_by="Alice",
    )
    assert right.status is Status.IN_PROGRESS
    shop_services.jobs.drain()
    view = desk.get(request_id)
    assert view.status is Status.COMPLETED
    assert view.outcome is not None
    assert view.outcome["found"] is True
    assert view.outcome["connected_values"] > 0


def test_a_known_person_with_no_data_points_held_is_left_to_staff_not_denied(
    services: Services,
) -> None:
    # The newsletter holds only an address: nothing to compare, so no attempt is used up.
    services.vault.collect(
        screened(
            services.vault, Submission("newsletter", {"email": "nora@example.com"}, Source.WEB_FORM)
        ),
        actor="tests",
    )
    desk = services.requests
    request_id = desk.submit(
        Intake(
            kind=RequestKind.DELETION,
            channel=Channel.API,
            residence="US-CA",
            email="nora@example.com",
        ),
        actor="tests",
    )
    for _ in range(4):
        result = desk.verify(
            request_id,
            email_index=index_of(services, "nora@example.com"),
            data_points={"user.name": "Nora"},
        )
        assert result.staff_check
    view = desk.get(request_id)
    assert view.status is Status.AWAITING_VERIFICATION
    assert view.staff_check
    assert view.attempts == 0


def test_a_correction_of_a_category_the_shop_does_not_hold_still_completes(
    shop_services: Services, shop: Shop
) -> None:
    alice_in_the_vault(shop_services, "+14155550101")
    desk = shop_services.requests
    request_id = ask(
        shop_services,
        RequestKind.CORRECTION,
        corrections=[Correction("user.name", "Alice Liddell")],
    )
    desk.verify(
        request_id,
        email_index=index_of(shop_services, ALICE),
        data_points={"user.contact.phone_number": "415 555 0101"},
    )
    desk.approve(request_id, actor="staff:grace")
    shop_services.jobs.drain()
    view = desk.get(request_id)
    assert view.status is Status.COMPLETED
    alice = shop.row(customers, 1)
    assert alice is not None
    assert alice["full_name"] == "Alice Liddell"
    assert view.outcome == {
        "corrected": {"user.name": 1},
        "connected_values": 1,
        "unchanged_records": {},
    }


def test_a_corrected_address_leaves_the_orders_kept_for_tax_and_the_answer_says_so(
    shop_services: Services, shop: Shop, inbox: SmtpInbox
) -> None:
    alice_in_the_vault(shop_services, "+14155550101")
    before = shop.rows(orders)
    desk = shop_services.requests
    request_id = ask(
        shop_services,
        RequestKind.CORRECTION,
        corrections=[Correction("user.contact.address", "2 Birch Ln")],
    )
    desk.verify(
        request_id,
        email_index=index_of(shop_services, ALICE),
        data_points={"user.contact.phone_number": "415 555 0101"},
    )
    desk.approve(request_id, actor="staff:grace")
    shop_services.jobs.drain()

    view = desk.get(request_id)
    assert view.status is Status.COMPLETED
    assert shop.rows(orders) == before
    reason = "Orders are tax records, kept for seven years (26 CFR 1.6001-1)."
    assert view.outcome is not None
    assert view.outcome["unchanged_records"] == {"shop.orders": reason}
    answer = inbox.messages[-1].get_body(("plain",))
    assert answer is not None
    text = answer.get_content()
    assert "not rewritten by a correction" in text
    assert reason in text


def test_a_deletion_that_crashed_half_way_goes_on_and_tells_each_recipient_once(
    shop_services: Services, shop: Shop, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = alice_in_the_vault(shop_services, "+14155550101")
    desk = shop_services.requests
    request_id = ask(shop_services, RequestKind.DELETION)
    desk.verify(
        request_id,
        email_index=index_of(shop_services, ALICE),
        data_points={"user.name": "Alice"},
    )
    desk.approve(request_id, actor="staff:grace")
    real_shred = shop_services.vault.shred
    calls = []

    def crash_once(*args: Any, **kwargs: Any) -> bool:
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("the worker lost the key store")
        return real_shred(*args, **kwargs)

    monkeypatch.setattr(shop_services.vault, "shred", crash_once)
    shop_services.jobs.drain()  # the first attempt fails at the shred; the retry finishes

    view = desk.get(request_id)
    assert view.status is Status.COMPLETED
    assert len(calls) == 2
    with pytest.raises(SubjectErased):
        shop_services.vault.read(subject, "essential.service", actor="tests")
    with runtime.sessions() as session:
        notices = session.scalar(
            select(func.count()).select_from(Job).where(Job.kind == NOTIFY_RECIPIENT)
        )
    assert view.outcome is not None
    assert notices == len(view.outcome["recipients_notified"]) > 0
    assert view.outcome["vault_erased"] is True
    # The shop was erased once, by the first attempt, whose report stands.
    assert view.outcome["connected"]["shop.customers"]["rows_found"] == 1
