"""The age screen in a real browser (Debian's Chromium, driven by Playwright): a free date of
birth with no hint of the line, the neutral refusal, the same refusal for another date from the
same browser, nothing kept of the child, and an adult's sign-up going through."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pytest
import yaml
from sqlalchemy import func, select

from pledge.policy import load_policy_text, publish_policy
from pledge.vault import IdentityKind
from pledge.vault.tables import PersonalValue, Subject
from tests.conftest import REFERENCE_POLICY
from tests.e2e.conftest import Pledge

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHILD = "2017-03-09"
ADULT = "1984-11-23"


def counts(pledge: Pledge) -> tuple[int, int]:
    with pledge.services.vault.sessions() as session:
        subjects = session.scalar(select(func.count()).select_from(Subject)) or 0
        values = session.scalar(select(func.count()).select_from(PersonalValue)) or 0
    return subjects, values


def screen(page: Page, pledge: Pledge, born: str) -> str:
    page.goto(f"{pledge.url}/sign-up/newsletter")
    if page.locator("#date_of_birth").count() == 0:
        return page.inner_text("main")
    page.fill("#date_of_birth", born)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page.inner_text("main")


@pytest.fixture
def no_child_accounts(pledge: Pledge) -> Pledge:
    """A policy version that takes no child accounts, even with a parent's consent."""
    raw = yaml.safe_load(REFERENCE_POLICY.read_text())
    raw["version"] = "2026.11-no-children"
    raw["children"]["child_accounts"] = "refused"
    publish_policy(
        pledge.services.vault.sessions,
        load_policy_text(yaml.safe_dump(raw, sort_keys=False), "no-children.yaml"),
        published_by="tests",
    )
    return pledge


def test_the_age_screen_asks_neutrally_refuses_neutrally_and_keeps_a_child_out(
    no_child_accounts: Pledge, browser: Browser
) -> None:
    pledge = no_child_accounts
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{pledge.url}/sign-up/newsletter")
    asked = page.inner_text("main")
    # Free entry of a date; no "I am over 13" box, no hint of the line, no age in a list.
    assert page.locator("#date_of_birth").get_attribute("type") == "text"
    assert page.locator("input[type=checkbox]").count() == 0
    assert page.locator("select").count() == 0
    assert not re.search(r"\b1[2-8]\b|under|over|old enough|age", asked, re.IGNORECASE)

    refused = screen(page, pledge, CHILD)
    assert "Sorry, we can't sign you up right now." in refused
    assert not re.search(r"\b13\b|age|young|parent|child", refused, re.IGNORECASE)
    assert counts(pledge) == (0, 0)
    (block,) = context.cookies()
    assert block["name"] == "pledge_age"
    assert block["httpOnly"]
    # Kept for the policy's retry_block (7 days in the reference policy), not for the session.
    assert abs(block["expires"] - time.time() - 7 * 86400) < 120

    again = screen(page, pledge, ADULT)  # the same browser, another date
    assert "Sorry, we can't sign you up right now." in again
    assert page.locator("#date_of_birth").count() == 0
    assert counts(pledge) == (0, 0)
    (kept,) = context.cookies()
    assert kept["expires"] == block["expires"], "trying again neither lifts nor moves the block"
    context.close()


def test_a_child_is_sent_to_a_parent_and_cannot_change_the_answer_with_another_date(
    pledge: Pledge, browser: Browser
) -> None:
    context = browser.new_context()
    page = context.new_page()
    first = screen(page, pledge, CHILD)
    assert "permission of a parent or guardian" in first
    assert not re.search(r"\b13\b|under|old enough", first, re.IGNORECASE)
    again = screen(page, pledge, ADULT)
    assert "permission of a parent or guardian" in again, "the retry block holds"
    assert counts(pledge) == (0, 0)
    context.close()


def test_an_adult_signs_up_through_the_screen_and_opts_in(pledge: Pledge, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    screen(page, pledge, ADULT)
    page.fill("#f-email", "grown.up@example.com")
    page.check("input[name='opt_in:marketing.communications.email']")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "You are signed up" in page.inner_text("main")
    assert counts(pledge)[0] == 1
    vault = pledge.services.vault
    subject = vault.resolve(IdentityKind.EMAIL, "grown.up@example.com", actor="tests")
    assert subject is not None
    decision = pledge.services.consent.decide(
        subject, "marketing.communications.email", ["user.contact.email"], actor="tests"
    )
    assert decision.allowed, decision.reasons
    context.close()
