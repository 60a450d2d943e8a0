"""The human-readable policy says, in both formats, what the policy file declares."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pledge.policy.document import (
    ContactMethod,
    DoNotTrackAnswer,
    GpcAnswer,
    PolicyDocument,
    RecipientKind,
)
from pledge.policy.loader import load_policy_file
from pledge.policy.rendering import render_policy, retention_phrase

REFERENCE = Path(__file__).parents[3] / "policies" / "reference.yaml"
SEED = Path(__file__).parents[4] / "shared" / "reference" / "seed-privacy-policy.txt"
PUBLIC_URL = "https://privacy.auraphoto.example"
KIND_HEADINGS = {
    RecipientKind.PROCESSOR: "Service providers working for us",
    RecipientKind.AD_NETWORK: "Advertising networks",
    RecipientKind.AFFILIATE: "Affiliated companies",
    RecipientKind.SOCIAL_NETWORK: "Social networks",
    RecipientKind.LAW_ENFORCEMENT: "Law enforcement",
    RecipientKind.AUDITOR: "Auditors",
}
BLOCK_TAGS = {"p", "li", "h1", "h2", "h3", "h4", "dt", "dd", "address", "br", "ul", "ol", "dl"}


class _PageReader(HTMLParser):
    """The visible text of a page's body, one block per line, and its headings in order."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = [""]
        self.headings: list[tuple[str, str | None, str]] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self._hidden = False
        self._heading: tuple[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        self._hidden = tag in {"style", "title"}
        if tag in BLOCK_TAGS:
            self.lines.append("")
        if re.fullmatch(r"h[1-4]", tag):
            self._heading = (tag, found.get("id"))
            self.headings.append((tag, found.get("id"), ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCK_TAGS:
            self.lines.append("")
        if re.fullmatch(r"h[1-4]", tag):
            self._heading = None
        self._hidden = False

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.lines[-1] += data
            if self._heading is not None:
                tag, anchor, text = self.headings[-1]
                self.headings[-1] = (tag, anchor, text + data)


def _read_page(html: str) -> _PageReader:
    reader = _PageReader()
    reader.feed(html)
    return reader


def _page_text(html: str) -> str:
    return "\n".join(line.strip() for line in _read_page(html).lines if line.strip())


def _markdown_text(markdown: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"\\\n", "\n", text)
    text = re.sub(r"\\(.)", r"\1", text)
    text = re.sub(r"^(#+ |\d+\. |- |> )", "", text, flags=re.MULTILINE)
    return text.replace("**", "")


def _md_section(markdown: str, title: str, level: int = 2) -> str:
    marks = "#" * level
    start = markdown.index(f"\n{marks} {title}\n")
    end = re.search(rf"\n#{{1,{level}}} ", markdown[start + 1 :])
    return markdown[start : start + 1 + end.start()] if end else markdown[start:]


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?:;])\s+|\n", text) if _words(s)]


@pytest.fixture(scope="module")
def document() -> PolicyDocument:
    return load_policy_file(REFERENCE).document


@pytest.fixture(scope="module")
def html(document: PolicyDocument) -> str:
    return render_policy(document, "html", public_url=PUBLIC_URL)


@pytest.fixture(scope="module")
def markdown(document: PolicyDocument) -> str:
    return render_policy(document, "md", public_url=PUBLIC_URL)


def test_the_effective_date_and_version_appear_in_both_formats(html: str, markdown: str) -> None:
    for text in (_page_text(html), _markdown_text(markdown)):
        assert "in effect from November 1, 2026" in text
        assert "Version 2026.11" in text
        assert "Aura Imaging, Inc. Privacy Policy" in text
    assert '<time datetime="2026-11-01">' in html


def test_every_category_name_and_retention_period_appears_in_both_formats(
    document: PolicyDocument, html: str, markdown: str
) -> None:
    page = _page_text(html)
    for key, category in document.data_categories.items():
        name = document.category_name(key)
        block = _markdown_text(_md_section(markdown, name, level=3))
        assert retention_phrase(category.retention) in block
        assert str(category.retention.period) in block
        assert f"{name}\n" in page
        assert retention_phrase(category.retention) in page


def test_every_retention_period_is_worded_with_its_start_and_its_end(markdown: str) -> None:
    text = _markdown_text(markdown)
    assert "Kept for 3 years after your last activity with us, then deleted." in text
    assert "Kept for 120 days after we collect it, then deleted." in text
    assert (
        "Kept for 30 days after you close your account or end your relationship with us,"
        " then deleted." in text
    )
    assert "Kept for 2 years after we collect it, then anonymized" in text


def test_a_longer_period_for_one_purpose_appears_with_its_reason(markdown: str) -> None:
    block = _markdown_text(_md_section(markdown, "Mailing address", level=3))
    assert "For “Meet legal obligations”: kept for 7 years after your last activity" in block
    assert "Billing addresses on invoices are kept for tax audits." in block


def test_each_category_names_its_purposes_and_the_forms_that_collect_it(markdown: str) -> None:
    block = _markdown_text(_md_section(markdown, "Payment card", level=3))
    assert "Why we use it: Take payment for orders; Verify identity and prevent fraud." in block
    assert "Where we collect it: Shop checkout." in block


def test_unlinkable_data_and_secrets_carry_their_own_promise(markdown: str) -> None:
    ip_address = _md_section(markdown, "IP address", level=3)
    assert "Never linked to you" in ip_address
    for secret in ("Account password", "Payment card"):
        assert "never included in the copies of your data" in _md_section(markdown, secret, 3)
    assert "never included" not in _md_section(markdown, "Orders", level=3)
    assert "Never linked" not in _md_section(markdown, "Orders", level=3)


def test_each_legal_basis_is_put_in_plain_words(markdown: str) -> None:
    text = _markdown_text(markdown)
    newsletters = _md_section(markdown, "Marketing e-mail and newsletters", level=3)
    assert "Only if you opt in; you can withdraw at any time." in newsletters
    assert "Our own direct marketing." in newsletters
    assert "Needed to provide what you asked for." in _md_section(markdown, "Ship orders", 3)
    affiliates = _markdown_text(_md_section(markdown, "Affiliates' own marketing", level=3))
    assert "On unless you opt out" in affiliates
    assert "Counts as a sale of personal information" in affiliates
    assert "Counts as sharing for cross-context behavioral advertising." in text


def test_every_recipient_name_appears_grouped_under_its_kind_in_markdown(
    document: PolicyDocument, markdown: str
) -> None:
    group_of: dict[str, str] = {}
    group = ""
    for line in _md_section(markdown, "Who we share it with").splitlines():
        if line.startswith("### "):
            group = _markdown_text(line)
        elif line.startswith("#### "):
            group_of[_markdown_text(line)] = group
    sharing = _md_section(markdown, "Who we share it with")
    for recipient in document.recipients.values():
        assert group_of[recipient.name] == KIND_HEADINGS[recipient.kind]
        for category in recipient.categories:
            assert document.category_name(category) in sharing


def test_every_recipient_name_appears_grouped_under_its_kind_in_html(
    document: PolicyDocument, html: str
) -> None:
    group_of: dict[str, str] = {}
    group = ""
    for tag, _, text in _read_page(html).headings:
        if tag == "h3":
            group = text
        elif tag == "h4":
            group_of[text] = group
    for recipient in document.recipients.values():
        assert group_of[recipient.name] == KIND_HEADINGS[recipient.kind]


def test_a_recipient_shows_its_condition_and_its_own_direct_marketing(markdown: str) -> None:
    sharing = _markdown_text(_md_section(markdown, "Who we share it with"))
    assert "Only when you connect a social network account to ours." in sharing
    assert "Example Affiliate Brands, Inc. also uses this data for its own direct marketing." in (
        sharing
    )
    assert "Google LLC (Google Analytics and Google Ads remarketing) also uses" not in sharing


def test_cookies_show_the_choice_they_need_and_who_sets_each_tracker(markdown: str) -> None:
    cookies = _markdown_text(_md_section(markdown, "Cookies and trackers"))
    assert "Your choice: Always on" in _markdown_text(
        _md_section(markdown, "Strictly necessary", 3)
    )
    assert "Your choice: On until you switch them off." in cookies
    assert "_ga: a cookie set by Google LLC" in cookies
    assert "kept for up to 13 months" in cookies
    assert "pledge_session: a cookie set by us, kept for up to 1 day" in cookies


def test_visitor_counting_states_the_salt_periods_and_the_smallest_reported_count(
    markdown: str,
) -> None:
    text = _markdown_text(_md_section(markdown, "Visitor counts and aggregate data"))
    assert "An IP address is never stored with your identity." in text
    assert "replace every day and keep for no more than 48 hours" in text
    assert "never show a figure smaller than 10" in text


def test_gpc_statement_follows_the_signals_section(document: PolicyDocument) -> None:
    honored = "When your browser sends a Global Privacy Control signal, we take it as your request"
    ignored = "We do not act on Global Privacy Control signals"
    signals = document.signals.model_copy(update={"global_privacy_control": GpcAnswer.NOT_HONORED})
    changed = document.model_copy(update={"signals": signals})
    for fmt in ("html", "md"):
        before = render_policy(document, fmt, public_url=PUBLIC_URL)
        after = render_policy(changed, fmt, public_url=PUBLIC_URL)
        assert honored in before
        assert ignored not in before
        assert ignored in after
        assert honored not in after
        assert "When your browser sends a Do Not Track signal, we take it" in after


def test_dnt_statement_follows_the_signals_section(document: PolicyDocument) -> None:
    honored = "When your browser sends a Do Not Track signal, we take it as your request"
    ignored = "We do not act on Do Not Track signals"
    signals = document.signals.model_copy(update={"do_not_track": DoNotTrackAnswer.NOT_HONORED})
    changed = document.model_copy(update={"signals": signals})
    for fmt in ("html", "md"):
        before = render_policy(document, fmt, public_url=PUBLIC_URL)
        after = render_policy(changed, fmt, public_url=PUBLIC_URL)
        assert honored in before
        assert ignored not in before
        assert ignored in after
        assert honored not in after
        assert "When your browser sends a Global Privacy Control signal, we take it" in after


def test_the_california_section_names_the_shine_the_light_contact_and_recipients(
    document: PolicyDocument, html: str, markdown: str
) -> None:
    contact = document.organization.shine_the_light
    page = _read_page(html)
    assert "your-california-privacy-rights" in page.ids
    html_section = html[html.index('<h2 id="your-california-privacy-rights">') :]
    html_section = _page_text(html_section[: html_section.index("</section>")])
    md_section = _markdown_text(_md_section(markdown, "Your California Privacy Rights"))
    for section in (html_section, md_section):
        assert f"Attn: {contact.attention}" in section
        for line in contact.postal_address.lines():
            assert line in section
        assert "once per calendar year and free of charge" in section
        assert "1798.83" in section
        assert "Example Affiliate Brands, Inc., 600 Example Boulevard" in section
        assert "Sold to Example Affiliate Brands, Inc." in section
        assert "Example Hosting" not in section


def test_a_business_without_third_party_marketing_says_so(document: PolicyDocument) -> None:
    recipients = {
        key: recipient.model_copy(update={"own_direct_marketing": False})
        for key, recipient in document.recipients.items()
    }
    changed = document.model_copy(update={"recipients": recipients})
    markdown = render_policy(changed, "md", public_url=PUBLIC_URL)
    section = _md_section(markdown, "Your California Privacy Rights")
    assert "We do not disclose personal information to third parties for their own direct" in (
        section
    )


def test_html_escapes_a_category_name_holding_markup(document: PolicyDocument) -> None:
    hostile = "<script>alert(1)</script>"
    categories = dict(document.data_categories)
    categories["user.job_title"] = categories["user.job_title"].model_copy(update={"name": hostile})
    changed = document.model_copy(update={"data_categories": categories})
    html = render_policy(changed, "html", public_url=PUBLIC_URL)
    markdown = render_policy(changed, "md", public_url=PUBLIC_URL)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert r"\<script\>alert(1)\</script\>" in markdown


def test_the_html_page_links_only_to_the_organization_and_mailto(
    document: PolicyDocument, html: str
) -> None:
    own = (document.organization.website, PUBLIC_URL)
    urls = re.findall(r"https?://[^\s\"'<>)]+", html)
    assert urls
    assert [url for url in urls if not url.startswith(own)] == []
    assert f'href="{PUBLIC_URL}/privacy-center"' in html
    assert 'href="mailto:info@auraphoto.com"' in html
    for external in ("<script", "<link", "@import", "src="):
        assert external not in html


def test_the_html_page_is_a_standalone_accessible_document(html: str) -> None:
    page = _read_page(html)
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html
    assert '<meta charset="utf-8">' in html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<style>" in html
    assert "<main" in html
    assert all(anchor for tag, anchor, _ in page.headings if tag in {"h2", "h3"})
    fragments = [link.removeprefix("#") for link in page.links if link.startswith("#")]
    assert "your-california-privacy-rights" in fragments
    assert set(fragments) <= page.ids


def test_the_markdown_contents_link_to_its_own_headings(markdown: str) -> None:
    contents = _md_section(markdown, "Contents")
    headings = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    slugs = {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert "your-california-privacy-rights" in links
    assert set(links) <= slugs
    assert len(links) == len(headings) - 1


def test_both_formats_say_the_same_things(html: str, markdown: str) -> None:
    page_words = f" {_words(_page_text(html))} "
    markdown_words = f" {_words(_markdown_text(markdown))} "
    html_only = {"skip to the policy"}
    for sentence in _sentences(_markdown_text(markdown)):
        assert f" {_words(sentence)} " in page_words, sentence
    for sentence in _sentences(_page_text(html)):
        if _words(sentence) not in html_only:
            assert f" {_words(sentence)} " in markdown_words, sentence


def test_the_privacy_center_address_is_built_from_the_public_url(document: PolicyDocument) -> None:
    markdown = render_policy(document, "md", public_url="https://example.org/")
    assert "(https://example.org/privacy-center)" in markdown
    assert "example.org//" not in markdown


def test_what_changed_is_listed_only_for_a_material_version(document: PolicyDocument) -> None:
    material = render_policy(document, "md", public_url=PUBLIC_URL)
    assert "## What changed" in material
    for change in document.summary_of_changes:
        assert change in _markdown_text(material)
    minor = render_policy(document.model_copy(update={"material": False}), "md", public_url="x")
    assert "What changed" not in minor


def test_children_section_follows_the_parental_consent_settings(document: PolicyDocument) -> None:
    with_parents = _markdown_text(
        _md_section(render_policy(document, "md", public_url="x"), "Children")
    )
    assert "not directed at children under 13" in with_parents
    assert "the sign-up is refused and nothing you entered is kept" in with_parents
    assert "within 14 days" in with_parents
    assert "a check of the parent's government-issued ID" in with_parents
    assert "anyone we know to be under 16 unless they have opted in" in with_parents
    refused = document.children.model_copy(update={"child_accounts": "refused"})
    without = render_policy(document.model_copy(update={"children": refused}), "md", public_url="x")
    assert "verifiable consent" not in without


def test_user_content_and_links_sections_follow_the_notices(document: PolicyDocument) -> None:
    markdown = render_policy(document, "md", public_url=PUBLIC_URL)
    assert "we scan it for personal data and remove what we find" in markdown
    assert "Our website links to websites that others run." in markdown
    notices = document.notices.model_copy(
        update={"user_content_is_public": False, "links_to_other_sites": False}
    )
    quiet = render_policy(document.model_copy(update={"notices": notices}), "md", public_url="x")
    assert "## Content you submit" not in quiet
    assert "Our website links to websites" not in quiet
    assert "If you connect a social network account to ours" in quiet


def test_rights_name_every_channel_and_the_unsubscribe_link(markdown: str) -> None:
    rights = _markdown_text(_md_section(markdown, "Your rights and how to use them"))
    assert f"{PUBLIC_URL}/privacy-center" in rights
    assert "info@auraphoto.com" in rights
    assert "one-click unsubscribe link" in rights
    assert "authorized agent" in rights
    assert "check that it really comes from you" in rights
    for right in ("Export it", "Correct it", "Delete it", "Appeal", "Limit sensitive data"):
        assert f"{right}:" in rights


def test_an_unknown_format_is_refused(document: PolicyDocument) -> None:
    with pytest.raises(ValueError, match="unknown policy format 'pdf'"):
        render_policy(document, "pdf", public_url=PUBLIC_URL)


def test_no_sentence_of_the_seed_policy_is_reproduced(markdown: str, html: str) -> None:
    if not SEED.is_file():
        message = f"the seed policy is not beside the repository ({SEED})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI clones have ../shared beside them", pytrace=False)
        pytest.skip(message)
    seed = SEED.read_text(encoding="utf-8")
    fragments = re.split(r"[.;:?!\n]", seed)
    long_ones = [_words(f) for f in fragments if len(_words(f).split()) >= 8]
    assert long_ones
    rendered = f" {_words(_markdown_text(markdown))} {_words(_page_text(html))} "
    copied = [fragment for fragment in long_ones if f" {fragment} " in rendered]
    assert copied == []


def test_each_recipient_shows_what_its_agreement_binds_it_to() -> None:
    markdown = render_policy(load_policy_file(REFERENCE).document, "md", public_url=PUBLIC_URL)
    processor = markdown.split("Example Payments, LLC", 1)[1].split("###", 1)[0]
    assert "use the data only for the purposes listed here" in processor
    assert "protect it at least as well as we do" in processor
    authorities = markdown.split("Law enforcement and government bodies", 1)[1].split("##", 1)[0]
    assert "Our agreement requires them to" not in authorities


def test_the_ways_we_reach_people_follow_the_policy() -> None:
    document = load_policy_file(REFERENCE).document
    both = render_policy(document, "md", public_url=PUBLIC_URL)
    assert "we do so by e-mail or post" in both
    org = document.organization.model_copy(update={"contacts_people_by": [ContactMethod.EMAIL]})
    only_email = render_policy(
        document.model_copy(update={"organization": org}), "md", public_url=PUBLIC_URL
    )
    assert "we do so by e-mail," in only_email
