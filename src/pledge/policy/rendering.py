"""The human-readable privacy policy: a `PolicyDocument` rendered as an HTML page or Markdown.

Every choice of wording lives in the small pure functions below, which turn the document into a
plain view-model; both templates print that same view-model, so the two formats say the same
things and differ only in markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import jinja2

from pledge.policy.document import (
    ConsentRequirement,
    ContactMethod,
    DirectMarketing,
    DoNotTrackAnswer,
    GpcAnswer,
    LegalBasis,
    ParentalConsentMethod,
    Period,
    PolicyDocument,
    Purpose,
    Recipient,
    RecipientKind,
    Retention,
    Tracker,
)

TEMPLATES = {"html": "policy.html.j2", "md": "policy.md.j2"}
"""The formats `render_policy` knows, and the template each is printed with."""

_STARTS = {
    "collection": "after we collect it",
    "last_activity": "after your last activity with us",
    "end_of_relationship": "after you close your account or end your relationship with us",
}
_THEN = {"delete": "deleted", "anonymize": "anonymized, so that it no longer identifies anyone"}
_BASES = {
    LegalBasis.CONTRACT: "Needed to provide what you asked for.",
    LegalBasis.LEGITIMATE_INTEREST: "Our legitimate interest, which we weigh against your privacy.",
    LegalBasis.LEGAL_OBLIGATION: "Required by law.",
    LegalBasis.CONSENT: "Only if you opt in; you can withdraw at any time.",
    LegalBasis.OPT_OUT: "On unless you opt out; you can opt out at any time.",
}
_KINDS = {
    RecipientKind.PROCESSOR: "Service providers working for us",
    RecipientKind.AD_NETWORK: "Advertising networks",
    RecipientKind.ANALYTICS: "Analytics providers",
    RecipientKind.AFFILIATE: "Affiliated companies",
    RecipientKind.SOCIAL_NETWORK: "Social networks",
    RecipientKind.LAW_ENFORCEMENT: "Law enforcement",
    RecipientKind.GOVERNMENT: "Government bodies",
    RecipientKind.AUDITOR: "Auditors",
}
_CONSENT = {
    ConsentRequirement.NONE: "Always on: the services cannot work without them.",
    ConsentRequirement.OPT_IN: "Off until you switch them on.",
    ConsentRequirement.OPT_OUT: "On until you switch them off.",
}
_PARENTAL = {
    ParentalConsentMethod.SIGNED_FORM: "a consent form signed by the parent and sent back to us",
    ParentalConsentMethod.PAYMENT_CARD: "a small card payment that the card holder is told of",
    ParentalConsentMethod.KNOWLEDGE_BASED: "questions only the parent could be expected to answer",
    ParentalConsentMethod.GOVERNMENT_ID: "a check of the parent's government-issued ID",
    ParentalConsentMethod.EMAIL_PLUS: "an e-mail from the parent, confirmed by a second message"
    " (only when the child's data stays with us)",
}
_HONORED = "When your browser sends a {} signal, we take it as your request to opt out of the"
_HONORED += " sale and sharing of your personal information; you need do nothing more."
_IGNORED = "We do not act on {} signals at present; use the privacy center to make your choices."
_COUNTRIES = {"US": "the United States"}
_TRACKER_KINDS = {"cookie": "cookie", "pixel": "pixel", "local_storage": "local storage item"}


@dataclass(frozen=True)
class Section:
    """A part of the policy: its heading and the anchor the table of contents links to."""

    anchor: str
    title: str


@dataclass(frozen=True)
class CategoryView:
    """A data category: its purposes, where it is collected, and how long it is kept."""

    anchor: str
    name: str
    description: str | None
    purposes: list[str]
    collected_at: list[str]
    retention: str
    purpose_retention: list[str]
    linkable: bool
    shown_in_access_requests: bool
    sensitive: bool


@dataclass(frozen=True)
class PurposeView:
    """A purpose, its legal basis in plain words, and what the law counts it as."""

    anchor: str
    name: str
    description: str
    basis: str
    flags: list[str]


@dataclass(frozen=True)
class RecipientView:
    """A party that may receive personal data, what it receives and why."""

    name: str
    address: str | None
    description: str | None
    categories: list[str]
    purposes: list[str]
    only_when: str | None
    own_direct_marketing: bool
    bound_by: list[str]


@dataclass(frozen=True)
class CookieView:
    """A cookie category, the choice it needs, and its trackers (each a line of text)."""

    anchor: str
    name: str
    description: str
    consent: str
    trackers: list[str]


_CONTACT = {
    ContactMethod.EMAIL: "e-mail",
    ContactMethod.POSTAL_MAIL: "post",
    ContactMethod.PHONE: "phone",
}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def render_policy(document: PolicyDocument, fmt: str, *, public_url: str) -> str:
    """The policy as a standalone HTML page (`fmt="html"`) or as Markdown (`fmt="md"`)."""
    if fmt not in TEMPLATES:
        raise ValueError(f"unknown policy format {fmt!r}; use one of: {', '.join(TEMPLATES)}")
    template = _environment().get_template(TEMPLATES[fmt])
    return template.render(build_view(document, public_url=public_url))


def build_view(document: PolicyDocument, *, public_url: str) -> dict[str, object]:
    """The view-model both templates print; `document` is passed for its plain fields only."""
    org = document.organization
    sts, date = org.shine_the_light, document.effective_date
    groups, social = group_recipients(document), _KINDS[RecipientKind.SOCIAL_NETWORK]
    marketers = [r for r in document.recipients.values() if r.own_direct_marketing]
    return {
        "document": document,
        "org": org,
        "name": org.trade_name or org.legal_name,
        "effective_date": f"{date:%B} {date.day}, {date.year}",
        "sections": policy_sections(document),
        "address_lines": org.postal_address.lines(),
        "country": _COUNTRIES.get(org.processing_country, org.processing_country),
        "privacy_center_url": f"{public_url.rstrip('/')}/privacy-center",
        "categories": [describe_category(document, key) for key in document.data_categories],
        "purposes": [describe_purpose(document, k, p) for k, p in document.purposes.items()],
        "recipient_groups": groups,
        "cookies": [describe_cookies(document, key) for key in document.cookies],
        "salt_rotation": _every(document.analytics.salt_rotation),
        "age_screens": [p.name for p in document.collection_points.values() if p.age_screen],
        "announced": announcement_channels(document),
        "signals": describe_signals(document),
        "parental_methods": [_PARENTAL[m] for m in document.children.parental_consent_methods],
        "sold_or_shared": sold_or_shared(document),
        "shine_the_light": [org.legal_name, f"Attn: {sts.attention}", *sts.postal_address.lines()],
        "marketers": [describe_recipient(document, r) for r in marketers],
        "social_group": next((g for g in groups if g.title == social), None),
        "reach_you_by": _join([_CONTACT[m] for m in org.contacts_people_by]),
    }


def policy_sections(document: PolicyDocument) -> dict[str, Section]:
    """The sections this document needs, in order, keyed by the name the templates use."""
    code = document.organization.processing_country
    country = _COUNTRIES.get(code, code)
    social = any(r.kind is RecipientKind.SOCIAL_NETWORK for r in document.recipients.values())
    other_sites = document.notices.links_to_other_sites or social
    wanted = {
        "changes_made": ("What changed", document.material and bool(document.summary_of_changes)),
        "who": ("Who we are", True),
        "collect": ("What we collect and why", True),
        "purposes": ("Why we use your data", True),
        "sharing": ("Who we share it with", True),
        "cookies": ("Cookies and trackers", True),
        "analytics": ("Visitor counts and aggregate data", True),
        "signals": ("Do Not Track and Global Privacy Control", True),
        "rights": ("Your rights and how to use them", True),
        "children": ("Children", True),
        "user_content": ("Content you submit", document.notices.user_content_is_public),
        "other_sites": ("Other websites and social networks", other_sites),
        "security": ("How we protect your data", True),
        "california": ("Your California Privacy Rights", True),
        "processing": (f"Processing in {country}", True),
        "policy_changes": ("Changes to this policy", True),
        "contact": ("Questions and complaints", True),
    }
    return {key: Section(anchor(title), title) for key, (title, shown) in wanted.items() if shown}


def anchor(title: str) -> str:
    """The fragment id of a heading, as GitHub derives it, so Markdown links work there too."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def retention_phrase(retention: Retention) -> str:
    """How long a category is kept, and what happens then, as a sentence."""
    return f"Kept for {retention.period} {_STARTS[retention.starts]}, then {_THEN[retention.then]}."


def describe_category(document: PolicyDocument, key: str) -> CategoryView:
    """A category with its purposes, the places that collect it and its retention in words."""
    category = document.data_categories[key]
    points = document.collection_points.values()
    starts = _STARTS[category.retention.starts]
    return CategoryView(
        anchor=f"data-{anchor(key.replace('.', ' '))}",
        name=document.category_name(key),
        description=category.description,
        purposes=[document.purpose_name(p) for p in category.purposes],
        collected_at=[p.name for p in points if any(f.category == key for f in p.fields.values())],
        retention=retention_phrase(category.retention),
        purpose_retention=[
            f"For “{document.purpose_name(use)}”: kept for {rule.period} {starts}. {rule.reason}"
            for use, rule in category.retention.by_purpose.items()
        ],
        linkable=category.linkable,
        shown_in_access_requests=category.shown_in_access_requests,
        sensitive=category.sensitive,
    )


def describe_purpose(document: PolicyDocument, key: str, purpose: Purpose) -> PurposeView:
    """A purpose with its legal basis in plain words and what the law counts it as."""
    marketing = purpose.direct_marketing
    flags = {
        "Counts as a sale of personal information under California law.": purpose.sale,
        "Counts as sharing for cross-context behavioral advertising.": purpose.sharing,
        "Our own direct marketing.": marketing is DirectMarketing.OWN,
        "Direct marketing by other companies, for their own ends.": (
            marketing is DirectMarketing.THIRD_PARTY
        ),
        "Uses sensitive personal information.": purpose.sensitive_data,
    }
    return PurposeView(
        anchor=f"use-{anchor(key.replace('.', ' '))}",
        name=document.purpose_name(key),
        description=purpose.description,
        basis=_BASES[purpose.legal_basis],
        flags=[text for text, applies in flags.items() if applies],
    )


def describe_recipient(document: PolicyDocument, recipient: Recipient) -> RecipientView:
    """A recipient with the names of what it receives and why."""
    address = recipient.postal_address
    return RecipientView(
        name=recipient.name,
        address=", ".join(address.lines()) if address else None,
        description=recipient.description,
        categories=[document.category_name(c) for c in recipient.categories],
        purposes=[document.purpose_name(p) for p in recipient.purposes],
        only_when=recipient.only_when,
        own_direct_marketing=recipient.own_direct_marketing,
        bound_by=agreement_terms(recipient),
    )


def agreement_terms(recipient: Recipient) -> list[str]:
    """What the recipient's agreement binds it to, in plain words."""
    agreement = recipient.agreement
    if agreement is None:
        return []
    terms = [
        (agreement.purpose_limited, "use the data only for the purposes listed here"),
        (agreement.equivalent_protection, "protect it at least as well as we do"),
        (agreement.notifies_if_unable, "tell us if it can no longer do so"),
    ]
    return [text for holds, text in terms if holds]


def group_recipients(document: PolicyDocument) -> dict[Section, list[RecipientView]]:
    """Recipients grouped under the name of their kind, kinds in declared order, none empty."""
    groups = {
        Section(f"share-{anchor(_KINDS[kind])}", _KINDS[kind]): [
            describe_recipient(document, r) for r in document.recipients.values() if r.kind is kind
        ]
        for kind in RecipientKind
    }
    return {group: members for group, members in groups.items() if members}


def describe_cookies(document: PolicyDocument, key: str) -> CookieView:
    """A cookie category with the consent it needs and who sets each tracker, for how long."""
    group = document.cookies[key]
    trackers = [_tracker_line(document, tracker) for tracker in group.trackers]
    consent = _CONSENT[group.consent]
    return CookieView(f"cookies-{anchor(key)}", group.name, group.description, consent, trackers)


def sold_or_shared(document: PolicyDocument) -> list[tuple[str, list[str]]]:
    """Who receives data for a purpose counted as sale or sharing, and which categories."""
    disclosures = []
    for recipient in document.recipients.values():
        uses = [document.purposes[p] for p in recipient.purposes if p in document.purposes]
        categories = [document.category_name(c) for c in recipient.categories]
        if any(use.sale for use in uses):
            disclosures.append((f"Sold to {recipient.name}", categories))
        if any(use.sharing for use in uses):
            disclosures.append((f"Shared for advertising with {recipient.name}", categories))
    return disclosures


def describe_signals(document: PolicyDocument) -> list[str]:
    """How Do Not Track and Global Privacy Control are answered."""
    dnt, gpc = document.signals.do_not_track, document.signals.global_privacy_control
    honored = {
        "Do Not Track": dnt is DoNotTrackAnswer.OPT_OUT_OF_SALE_AND_SHARING,
        "Global Privacy Control": gpc is GpcAnswer.OPT_OUT_OF_SALE_AND_SHARING,
    }
    return [(_HONORED if yes else _IGNORED).format(name) for name, yes in honored.items()]


def announcement_channels(document: PolicyDocument) -> str:
    """Where a material change is announced, as a phrase ("" when nowhere beyond this page)."""
    notice = document.notices.material_change
    home, mail = notice.home_page, notice.email_subscribers
    channels = {"on our home page": home, "by e-mail to our subscribers": mail}
    return " and ".join(channel for channel, used in channels.items() if used)


def _tracker_line(document: PolicyDocument, tracker: Tracker) -> str:
    provider = document.recipients.get(tracker.provider or "")
    owner = provider.name if provider else "us"
    kind = _TRACKER_KINDS[tracker.kind]
    return f"{tracker.name}: a {kind} set by {owner}, kept for up to {tracker.lifetime}"


def _every(period: Period) -> str:
    return f"every {period.unit.value}" if period.amount == 1 else f"every {period}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


@jinja2.pass_eval_context
def _finalize(context: jinja2.nodes.EvalContext, value: object) -> object:
    """Escape every printed value: for HTML autoescape does it, for Markdown backslashes here."""
    if context.autoescape:
        return value
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("pledge.policy", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
