"""Pure consent rules: the ledger's events, folding them into a state, and deciding "may I?".

Nothing here touches a database. `fold` turns a subject's events into its current choices;
`DecisionTable.decide` answers whether a use is allowed, with every reason, from the policy
(compiled once per version) and those choices. The cookie banner's part is at the end: the
notice it shows, and what a visitor's choice of cookie categories records.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from pledge.policy.ages import AgeBand
from pledge.policy.document import (
    ConsentRequirement,
    CookieCategory,
    LegalBasis,
    PolicyDocument,
    RecipientKind,
)

GENESIS = "0" * 64
REPROMPT_BLOCK = dt.timedelta(days=365)
"""After an opt-out of sale or sharing, Pledge may not itself prompt the person to opt back in
for 12 months (CCPA regulations, 11 CCR 7026(k))."""


class Action(enum.StrEnum):
    """What a consent event does."""

    GRANT = "grant"
    WITHDRAW = "withdraw"


class Method(enum.StrEnum):
    """How the person expressed the choice (its proof)."""

    FORM_CHECKBOX = "form_checkbox"
    DOUBLE_OPT_IN = "double_opt_in"
    ONE_CLICK_UNSUBSCRIBE = "one_click_unsubscribe"
    GPC = "gpc"
    STAFF_ENTRY = "staff_entry"
    PARENT = "parent"
    PREFERENCES_PAGE = "preferences_page"
    COOKIE_BANNER = "cookie_banner"
    PRIVACY_REQUEST = "privacy_request"
    """An opt-out request (sale and sharing, sensitive data, all marketing) to the privacy team."""


AFFIRMATIVE_OPT_IN = frozenset(
    {
        Method.FORM_CHECKBOX,
        Method.DOUBLE_OPT_IN,
        Method.PREFERENCES_PAGE,
        Method.STAFF_ENTRY,
        Method.PARENT,
    }
)
"""The methods by which a grant is a fresh, affirmative act of the person: ticking a box,
confirming a double opt-in link, switching a choice on in the privacy center, telling staff
(who record it), or a parent consenting for their child. A grant by the cookie banner (a
browser's answer about cookies, not a person's about e-mail), by Global Privacy Control or by a
one-click unsubscribe (signals that only ever refuse) is none."""


@dataclass(frozen=True)
class ConsentEvent:
    """One grant or withdrawal, with its proof. Never an IP address."""

    seq: int
    subject_id: str
    purpose: str
    action: Action
    method: Method
    source: str
    """Where it was expressed: a collection point, the privacy center, a mail's link, ..."""
    notice_sha256: str
    """SHA-256 of the notice text the person saw."""
    policy_version: str
    at: dt.datetime
    expires_at: dt.datetime | None = None
    prompted_by_pledge: bool = False
    """The person acted on a prompt Pledge itself showed (limits re-prompting after opt-outs)."""


def event_hash(event: ConsentEvent, prev_hash: str) -> str:
    """SHA-256 over every field of the event and the previous event's hash."""
    at = event.at.astimezone(dt.UTC).isoformat()
    expires = event.expires_at.astimezone(dt.UTC).isoformat() if event.expires_at else None
    payload = json.dumps(
        [
            event.seq,
            event.subject_id,
            event.purpose,
            event.action.value,
            event.method.value,
            event.source,
            event.notice_sha256,
            event.policy_version,
            at,
            expires,
            event.prompted_by_pledge,
            prev_hash,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def first_break(events: Iterable[tuple[ConsentEvent, str, str]]) -> int | None:
    """The seq of the first event (ordered by seq, with its stored prev_hash and hash) whose
    link or content does not hold, or None when the chain is intact."""
    expected_prev = GENESIS
    for event, prev_hash, stored in events:
        if prev_hash != expected_prev or event_hash(event, prev_hash) != stored:
            return event.seq
        expected_prev = stored
    return None


@dataclass(frozen=True)
class Choice:
    """A subject's current choice about one purpose, and the event that made it."""

    granted: bool
    seq: int
    at: dt.datetime
    method: Method
    expires_at: dt.datetime | None = None


def fold(events: Iterable[ConsentEvent]) -> dict[str, Choice]:
    """The current choice per purpose: the latest event (by seq) for each purpose wins.

    Events may arrive in any order; the result depends only on which events there are.
    """
    latest: dict[str, ConsentEvent] = {}
    for event in events:
        held = latest.get(event.purpose)
        if held is None or event.seq > held.seq:
            latest[event.purpose] = event
    return {
        purpose: Choice(e.action is Action.GRANT, e.seq, e.at, e.method, e.expires_at)
        for purpose, e in latest.items()
    }


def reprompt_blocked_until(
    events: Iterable[ConsentEvent], purpose: str, sale_or_sharing: bool
) -> dt.datetime | None:
    """Until when Pledge may not record an opt-in to `purpose` that it prompted itself."""
    if not sale_or_sharing:
        return None
    withdrawals = [e.at for e in events if e.purpose == purpose and e.action is Action.WITHDRAW]
    return max(withdrawals) + REPROMPT_BLOCK if withdrawals else None


@dataclass(frozen=True)
class Decision:
    """Whether a use is allowed, and every reason that led there."""

    allowed: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _PurposeRule:
    basis: LegalBasis
    sale_or_sharing: bool
    categories: frozenset[str]
    targeted_ads: bool = False
    """Targeted (cross-context behavioural) advertising, which minors must opt in to too."""


def targets_ads(purpose: str) -> bool:
    """Whether a purpose is targeted advertising, by its fideslang key
    (`marketing.advertising...targeted...`)."""
    parts = purpose.split(".")
    return parts[:2] == ["marketing", "advertising"] and "targeted" in parts


MINOR_OPT_IN = "sale, sharing and targeted advertising"


@dataclass(frozen=True)
class DecisionTable:
    """The policy's answer to "may I?" for each purpose, compiled once per policy version."""

    version: str
    rules: Mapping[str, _PurposeRule]
    recipients: Mapping[str, tuple[frozenset[str], frozenset[str]]] = field(default_factory=dict)
    """For each recipient: the purposes and categories its agreement allows."""
    third_parties: frozenset[str] = frozenset()
    """Recipients that are third parties (not processors acting for the business), to whom a
    child's data goes only with a parent's separate consent."""
    visitor_rules: Mapping[str, _PurposeRule] = field(default_factory=dict)
    """The purposes a cookie category serves, as they apply to a visitor (a browser known only
    by its consent ID): the stricter of the purpose's legal basis and the category's consent."""

    @classmethod
    def compile(cls, document: PolicyDocument) -> DecisionTable:
        """Compile the policy's purposes, categories and recipients into lookups."""
        categories: dict[str, set[str]] = {key: set() for key in document.purposes}
        for category_key, category in document.data_categories.items():
            for purpose in category.purposes:
                categories[purpose].add(category_key)
        rules = {
            key: _PurposeRule(
                p.legal_basis, p.sale or p.sharing, frozenset(categories[key]), targets_ads(key)
            )
            for key, p in document.purposes.items()
        }
        recipients = {
            key: (frozenset(r.purposes), frozenset(r.categories))
            for key, r in document.recipients.items()
        }
        visitor_rules: dict[str, _PurposeRule] = {}
        for cookie_category in document.cookies.values():
            for key in cookie_category.purposes:
                held = visitor_rules.get(key, rules[key])
                visitor_rules[key] = replace(
                    held, basis=_stricter(held.basis, cookie_category.consent)
                )
        third_parties = frozenset(
            key for key, r in document.recipients.items() if r.kind is not RecipientKind.PROCESSOR
        )
        return cls(document.version, rules, recipients, third_parties, visitor_rules)

    def decide(
        self,
        purpose: str,
        categories: Iterable[str],
        choices: Mapping[str, Choice],
        *,
        now: dt.datetime,
        recipient: str | None = None,
        gpc: bool = False,
        visitor: bool = False,
        band: AgeBand | None = None,
        frozen: bool = False,
    ) -> Decision:
        """May `categories` be used for `purpose` (and disclosed to `recipient`)? Every reason.

        `choices` is the subject's folded ledger; `gpc` says the request carries Sec-GPC: 1;
        `visitor` says the subject is a cookie-banner visitor, whom only the purposes of the
        policy's cookie categories concern, on the terms of `visitor_rules`. `band` is the
        subject's age band, when a date of birth was collected: under 16, sale, sharing and
        targeted advertising need an opt-in (a parent's, under 13), and under 13 a disclosure
        to a third party needs a parent's separate consent. A `frozen` subject (a child found
        without a parent's consent) may be used for nothing but what the law requires.
        """
        rule = (self.visitor_rules if visitor else self.rules).get(purpose)
        if rule is None:
            what = "a purpose of a cookie category" if visitor else "a purpose"
            return Decision(
                allowed=False, reasons=(f"'{purpose}' is not {what} of policy {self.version}",)
            )
        reasons: list[str] = []
        allowed = True
        outside = sorted(set(categories) - rule.categories)
        if outside:
            allowed = False
            reasons.append(f"the policy does not let '{purpose}' use {', '.join(outside)}")
        if recipient is not None:
            allowed &= self._recipient_allows(recipient, purpose, set(categories), reasons)
        choice = choices.get(purpose)
        if choice is not None and choice.expires_at is not None and choice.expires_at <= now:
            reasons.append(
                f"the {'grant' if choice.granted else 'withdrawal'} of {choice.at:%Y-%m-%d} expired"
            )
            choice = None
        basis = rule.basis
        allowed &= _basis_allows(basis, choice, reasons)
        if rule.sale_or_sharing and gpc:
            allowed = False
            reasons.append("Global Privacy Control: this request opts out of sale and sharing")
        if band in {AgeBand.CHILD, AgeBand.TEEN} and basis is not LegalBasis.LEGAL_OBLIGATION:
            allowed &= _minor_allows(band, rule, choice, recipient in self.third_parties, reasons)
        if frozen and basis is not LegalBasis.LEGAL_OBLIGATION:
            allowed = False
            reasons.append(
                "frozen: a child found without a parent's consent; nothing but what the law "
                "requires until a parent consents or the data is erased"
            )
        return Decision(allowed=allowed, reasons=tuple(reasons))

    def _recipient_allows(
        self, recipient: str, purpose: str, categories: set[str], reasons: list[str]
    ) -> bool:
        terms = self.recipients.get(recipient)
        if terms is None:
            reasons.append(f"'{recipient}' is not a recipient of policy {self.version}")
            return False
        purposes, allowed_categories = terms
        ok = True
        if purpose not in purposes:
            reasons.append(f"the agreement with '{recipient}' does not allow '{purpose}'")
            ok = False
        outside = sorted(categories - allowed_categories)
        if outside:
            reasons.append(f"the agreement with '{recipient}' does not cover {', '.join(outside)}")
            ok = False
        if ok:
            reasons.append(
                f"the agreement with '{recipient}' allows this purpose and these categories"
            )
        return ok


def _basis_allows(basis: LegalBasis, choice: Choice | None, reasons: list[str]) -> bool:
    """The legal basis's part of a decision, with the person's choice; appends the reason."""
    if basis is LegalBasis.CONSENT:
        if choice is not None and choice.granted:
            reasons.append(f"consent: granted on {choice.at:%Y-%m-%d} by {choice.method.value}")
            return True
        reasons.append(
            "consent: needed and not granted"
            if choice is None
            else f"consent: withdrawn on {choice.at:%Y-%m-%d} by {choice.method.value}"
        )
        return False
    if basis is LegalBasis.OPT_OUT:
        if choice is not None and not choice.granted:
            reasons.append(
                f"opt-out: the person opted out on {choice.at:%Y-%m-%d} by {choice.method.value}"
            )
            return False
        reasons.append("opt-out: allowed until the person opts out, and they have not")
        return True
    reasons.append(f"legal basis: {basis.value} (no consent needed)")
    return True


def _minor_allows(
    band: AgeBand,
    rule: _PurposeRule,
    choice: Choice | None,
    third_party: bool,
    reasons: list[str],
) -> bool:
    """The age band's part of a decision: what a minor, or a child's parent, must have opted in
    to. Appends the reasons; false when the band forbids the use."""
    ok = True
    granted = choice is not None and choice.granted
    by_parent = granted and choice is not None and choice.method is Method.PARENT
    if rule.sale_or_sharing or rule.targeted_ads:
        if band is AgeBand.CHILD and not by_parent:
            ok = False
            reasons.append(f"age: under 13, {MINOR_OPT_IN} need a parent's consent, not given")
        elif band is AgeBand.TEEN and not granted:
            ok = False
            reasons.append(f"age: 13 to 15, {MINOR_OPT_IN} need the person's own opt-in, not given")
        else:
            who = "a parent" if band is AgeBand.CHILD else "the person"
            reasons.append(f"age: under 16, and {who} opted in to {MINOR_OPT_IN}")
    if band is AgeBand.CHILD and third_party:
        if by_parent:
            reasons.append("age: under 13, and a parent consented to disclosure to third parties")
        else:
            ok = False
            reasons.append(
                "age: under 13, disclosure to a third party needs a parent's separate consent, "
                "not given"
            )
    return ok


def audience_filter(
    table: DecisionTable, purpose: str, categories: Iterable[str], *, now: dt.datetime
) -> Callable[[tuple[bool, dt.datetime | None] | None], bool]:
    """The decision of `table.decide` for one purpose and categories, reduced to a predicate on
    a person's choice given as `(granted, expires_at)` or None: the policy's part is settled
    once, so millions of people are fast."""
    probe_allowed = table.decide(purpose, categories, {}, now=now).allowed
    rule = table.rules.get(purpose)
    if rule is None or (set(categories) - rule.categories):
        return lambda _choice: False

    def allowed(choice: tuple[bool, dt.datetime | None] | None) -> bool:
        if choice is not None and choice[1] is not None and choice[1] <= now:
            choice = None
        if rule.basis is LegalBasis.CONSENT:
            return choice is not None and choice[0]
        if rule.basis is LegalBasis.OPT_OUT:
            return choice is None or choice[0]
        return probe_allowed

    return allowed


def _stricter(basis: LegalBasis, consent: ConsentRequirement) -> LegalBasis:
    """A purpose's legal basis once a cookie category asks the visitor about it: opt-in cookies
    need a grant; opt-out cookies can be refused even for a purpose that needs no consent
    (analytics on legitimate interest); a consent purpose keeps needing a grant."""
    if consent is ConsentRequirement.OPT_IN:
        return LegalBasis.CONSENT
    if consent is ConsentRequirement.OPT_OUT and basis is not LegalBasis.CONSENT:
        return LegalBasis.OPT_OUT
    return basis


COOKIE_NOTICE_INTRO = (
    "We use cookies and similar trackers. The strictly necessary ones keep this site working; "
    "the others are used only as you choose here, and you can change your choice at any time."
)


def cookie_notice(document: PolicyDocument) -> str:
    """The text the cookie banner shows, exactly: a heading, the introduction, then each cookie
    category's name and description, one per line. The ledger keeps its SHA-256 as proof."""
    organization = document.organization.trade_name or document.organization.legal_name
    lines = [f"Cookies on {organization}", COOKIE_NOTICE_INTRO]
    lines += [f"{c.name}: {c.description}" for c in document.cookies.values()]
    return "\n".join(lines)


def notice_digest(text: str) -> str:
    """SHA-256 (hex) of a notice's text, as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def sells_or_shares(document: PolicyDocument, category: CookieCategory) -> bool:
    """Whether any purpose of the cookie category is a sale or sharing (what GPC opts out of)."""
    purposes = (document.purposes[key] for key in category.purposes)
    return any(p.sale or p.sharing for p in purposes)


class CookieChoiceInvalid(ValueError):
    """A cookie-banner answer the policy cannot take, naming the category at fault."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


@dataclass(frozen=True)
class PurposeChoice:
    """One grant or withdrawal a cookie-banner answer records."""

    purpose: str
    action: Action
    method: Method


def cookie_choices(
    document: PolicyDocument, chosen: Mapping[str, bool], *, gpc: bool
) -> tuple[dict[str, bool], list[PurposeChoice]]:
    """What a visitor's answer to the cookie banner comes to: the choice per category, and one
    grant or withdrawal per purpose of the categories that can be refused.

    Every such category must be answered; a strictly necessary one cannot be refused. `gpc`
    says the visitor's Global Privacy Control signal is on and the policy honors it: categories
    that sell or share are then refused, by method `gpc`, whatever was chosen. A purpose in
    several categories is granted only when all of them are.
    """
    for key in chosen:
        if key not in document.cookies:
            raise CookieChoiceInvalid(
                key, f"'{key}' is not a cookie category of policy {document.version}"
            )
    states: dict[str, bool] = {}
    by_purpose: dict[str, tuple[bool, bool]] = {}
    for key, category in document.cookies.items():
        if category.consent is ConsentRequirement.NONE:
            if chosen.get(key, True) is not True:
                raise CookieChoiceInvalid(
                    key, f"'{key}' is strictly necessary: it cannot be refused"
                )
            states[key] = True
            continue
        if key not in chosen:
            raise CookieChoiceInvalid(key, f"no choice was made for '{key}'")
        forced = gpc and sells_or_shares(document, category)
        states[key] = chosen[key] and not forced
        for purpose in category.purposes:
            granted, by_gpc = by_purpose.get(purpose, (True, False))
            by_purpose[purpose] = (granted and states[key], by_gpc or forced)
    return states, [
        PurposeChoice(
            purpose,
            Action.GRANT if granted else Action.WITHDRAW,
            Method.GPC if by_gpc else Method.COOKIE_BANNER,
        )
        for purpose, (granted, by_gpc) in by_purpose.items()
    ]


def cookie_state(
    document: PolicyDocument,
    choices: Mapping[str, Choice],
    events: Iterable[ConsentEvent],
    *,
    now: dt.datetime,
) -> tuple[dict[str, bool], dict[str, dt.datetime]]:
    """A visitor's choice per cookie category, from the ledger, and until when Pledge may not
    itself ask again about the categories they refused that sell or share (12 months).

    A category is granted when every one of its purposes is, refused when one is withdrawn, and
    left out when not all were answered (or a choice expired); strictly necessary ones are on.
    """
    events = list(events)
    states: dict[str, bool] = {}
    blocked: dict[str, dt.datetime] = {}
    for key, category in document.cookies.items():
        if category.consent is ConsentRequirement.NONE:
            states[key] = True
            continue
        current = [choices.get(p) for p in category.purposes]
        live = [c for c in current if c and (c.expires_at is None or c.expires_at > now)]
        if any(not c.granted for c in live):
            states[key] = False
        elif live and len(live) == len(current):
            states[key] = True
        if states.get(key) is False:
            untils = [
                reprompt_blocked_until(
                    events, p, document.purposes[p].sale or document.purposes[p].sharing
                )
                for p in category.purposes
            ]
            latest = max((u for u in untils if u is not None), default=None)
            if latest is not None and latest > now:
                blocked[key] = latest
    return states, blocked
