"""The policy file's shape: typed, immutable, and checked field by field by Pydantic.

Cross-references between sections (a field's category is declared, a recipient's purposes
exist, ...) are checked in `rules.py`; this module only says what each section looks like.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import zoneinfo
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""Keys of categories, purposes, collection points and recipients (fideslang's FidesKey form)."""

Key = Annotated[str, Field(pattern=KEY_PATTERN, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=4000)]


class Strict(BaseModel):
    """Every section refuses keys it does not know and cannot be changed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class TimeUnit(enum.StrEnum):
    """Units a period may be written in."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


_PERIOD = re.compile(r"^\s*(\d{1,4})\s+(hour|day|week|month|year)s?\s*$")
_ENDLESS = {"indefinite", "indefinitely", "forever", "permanent", "permanently", "unlimited"}


class Period(Strict):
    """A finite length of time, written `"<n> <unit>"` (e.g. `"2 years"`, `"48 hours"`)."""

    amount: int = Field(ge=1)
    unit: TimeUnit

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().lower() in _ENDLESS:
                raise ValueError(f"'{value}' is not a period: every period must be finite")
            match = _PERIOD.fullmatch(value.lower())
            if not match:
                raise ValueError(
                    f"'{value}' is not a period; write a number and a unit, e.g. '2 years', "
                    "'18 months', '30 days', '48 hours'"
                )
            return {"amount": int(match[1]), "unit": match[2]}
        return value

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.value}{'' if self.amount == 1 else 's'}"

    def approximate_days(self) -> float:
        """Length in days, months and years taken at their average length (for comparison)."""
        per_unit = {"hour": 1 / 24, "day": 1, "week": 7, "month": 30.44, "year": 365.25}
        return self.amount * per_unit[self.unit.value]


class PostalAddress(Strict):
    """A postal address, as it is printed on an envelope."""

    street: Text
    city: Text
    region: Annotated[str, Field(min_length=1, max_length=100)]
    postal_code: Annotated[str, Field(min_length=1, max_length=20)]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"

    def lines(self) -> list[str]:
        """The address as printable lines."""
        return [self.street, f"{self.city}, {self.region} {self.postal_code}", self.country]


class ShineTheLightContact(Strict):
    """Where California residents send Shine-the-Light requests (Civil Code 1798.83)."""

    attention: Text
    postal_address: PostalAddress
    email: EmailStr | None = None


class ContactMethod(enum.StrEnum):
    """A way the business reaches a person."""

    EMAIL = "email"
    POSTAL_MAIL = "postal_mail"
    PHONE = "phone"


class Organization(Strict):
    """The business that makes the promises."""

    legal_name: Text
    trade_name: Text | None = None
    website: Text
    postal_address: PostalAddress
    privacy_email: EmailStr
    privacy_phone: Annotated[str, Field(max_length=40)] | None = None
    shine_the_light: ShineTheLightContact
    processing_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"
    hosting: Text | None = None
    contacts_people_by: list[ContactMethod] = Field(default_factory=lambda: [ContactMethod.EMAIL])
    """How the business reaches people when it needs to (at the addresses they gave)."""

    def contact_details(self) -> list[str]:
        """The business's own e-mail addresses, phone number and street addresses: quoting
        them in a note or a reason is not personal data."""
        details = [
            str(self.privacy_email),
            self.privacy_phone or "",
            self.postal_address.street,
            str(self.shine_the_light.email or ""),
            self.shine_the_light.postal_address.street,
        ]
        return [detail for detail in details if detail]


class LegalBasis(enum.StrEnum):
    """Why a purpose is lawful, which also says whether it needs the person's say-so."""

    CONTRACT = "contract"
    """Needed to provide what the person asked for (an order, an account)."""
    LEGITIMATE_INTEREST = "legitimate_interest"
    """The business's own interest, balanced against the person's (security, fraud)."""
    LEGAL_OBLIGATION = "legal_obligation"
    """Required by law (tax records, lawful requests from authorities)."""
    CONSENT = "consent"
    """Off until the person opts in."""
    OPT_OUT = "opt_out"
    """On after notice, until the person opts out."""


class DirectMarketing(enum.StrEnum):
    """Whether a purpose is direct marketing, and by whom."""

    NONE = "none"
    OWN = "own"
    THIRD_PARTY = "third_party"


class Purpose(Strict):
    """A purpose (fideslang data use) and the terms it runs on."""

    name: Text | None = None
    description: Text
    legal_basis: LegalBasis
    sale: bool = False
    """Counts as a sale of personal information (CCPA)."""
    sharing: bool = False
    """Counts as sharing for cross-context behavioral advertising (CPRA)."""
    direct_marketing: DirectMarketing = DirectMarketing.NONE
    sensitive_data: bool = False
    """Uses sensitive personal information (subject to the right to limit)."""


class Retention(Strict):
    """How long a category is kept, and what happens then."""

    period: Period
    starts: Annotated[str, Field(pattern=r"^(collection|last_activity|end_of_relationship)$")]
    then: Annotated[str, Field(pattern=r"^(delete|anonymize)$")] = "delete"
    by_purpose: dict[Key, PurposeRetention] = Field(default_factory=dict)
    """Longer or shorter periods for a purpose that needs them (e.g. tax records)."""


class PurposeRetention(Strict):
    """A purpose's own retention period for a category, with the reason it differs."""

    period: Period
    reason: Text


class DataCategory(Strict):
    """A kind of personal data (fideslang data category) and the purposes it may serve."""

    name: Text | None = None
    description: Text | None = None
    purposes: list[Key] = Field(min_length=1)
    retention: Retention
    sensitive: bool = False
    linkable: bool = True
    """False for data that must never be tied to a person (e.g. IP addresses): Pledge refuses
    to store it against a subject."""
    shown_in_access_requests: bool = True
    """False for secrets such as passwords and full card numbers, never handed out."""

    @field_validator("purposes")
    @classmethod
    def _no_repeats(cls, purposes: list[str]) -> list[str]:
        repeated = sorted({p for p in purposes if purposes.count(p) > 1})
        if repeated:
            raise ValueError(f"purpose listed twice: {', '.join(repeated)}")
        return purposes


class Channel(enum.StrEnum):
    """How data reaches Pledge at a collection point."""

    WEB_FORM = "web_form"
    APP = "app"
    API = "api"
    STAFF_ENTRY = "staff_entry"
    SOCIAL_NETWORK = "social_network"
    DEVICE = "device"
    EMAIL = "email"


class CollectionField(Strict):
    """One field a collection point takes."""

    category: Key
    required: bool = False
    purposes: list[Key] = Field(min_length=1)
    """The purposes stated to the person when this field is collected."""
    scan_for_personal_data: bool = False
    """Free text that may hold personal data of its own (comments): scanned and redacted."""


class CollectionPoint(Strict):
    """A place where personal data enters: a form, an app screen, a staff entry screen."""

    name: Text
    description: Text | None = None
    channel: Channel
    subjects: list[Key] = Field(default_factory=lambda: ["customer"])
    """fideslang data subjects this point collects from (customer, prospect, visitor, ...)."""
    age_screen: bool = False
    """Ask for a date of birth first, neutrally, and refuse people under the minimum age."""
    fields: dict[Key, CollectionField] = Field(min_length=1)


class RecipientKind(enum.StrEnum):
    """What kind of party receives personal data."""

    PROCESSOR = "processor"
    AD_NETWORK = "ad_network"
    ANALYTICS = "analytics"
    AFFILIATE = "affiliate"
    SOCIAL_NETWORK = "social_network"
    LAW_ENFORCEMENT = "law_enforcement"
    GOVERNMENT = "government"
    AUDITOR = "auditor"


class Agreement(Strict):
    """What the written agreement with a recipient binds it to."""

    reference: Text | None = None
    """The contract's reference in the business's records (e.g. a DPA number)."""
    purpose_limited: bool
    """The recipient may use the data only for the purposes listed for it here."""
    equivalent_protection: bool
    """The recipient protects the data at least as well as the business does."""
    notifies_if_unable: bool
    """The recipient tells the business when it can no longer meet these obligations."""


class DeletionNotice(Strict):
    """How a recipient is told to delete a person's data: by e-mail or by a webhook, not both."""

    email: EmailStr | None = None
    webhook: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2000)] | None = None
    """An HTTPS URL (HTTP only for a local test receiver) that gets a signed JSON POST."""

    @model_validator(mode="after")
    def _one_channel(self) -> Self:
        if (self.email is None) == (self.webhook is None):
            raise ValueError("a deletion notice has exactly one of email or webhook")
        return self


class Recipient(Strict):
    """A party personal data may be disclosed to, and what its agreement allows."""

    name: Text
    kind: RecipientKind
    postal_address: PostalAddress | None = None
    """Required for every kind but law enforcement and government, whose address is recorded
    with each disclosure."""
    description: Text | None = None
    purposes: list[Key] = Field(min_length=1)
    categories: list[Key] = Field(min_length=1)
    own_direct_marketing: bool = False
    """The recipient uses the data for its own direct marketing (Shine the Light)."""
    only_when: Text | None = None
    """A condition the disclosure depends on, in plain words (e.g. the person links an account)."""
    agreement: Agreement | None = None
    """Required for every kind but law enforcement and government, which act under the law."""
    deletion_notice: DeletionNotice | None = None
    """Where the recipient is told that a person asked for deletion (CCPA 1798.105(c))."""

    @model_validator(mode="after")
    def _address_and_agreement_unless_authority(self) -> Self:
        if self.kind in {RecipientKind.LAW_ENFORCEMENT, RecipientKind.GOVERNMENT}:
            return self
        if self.postal_address is None:
            raise ValueError(f"a recipient of kind '{self.kind.value}' needs a postal_address")
        if self.agreement is None:
            raise ValueError(f"a recipient of kind '{self.kind.value}' needs an agreement")
        if not self.agreement.purpose_limited:
            raise ValueError(
                "the agreement must limit the recipient to the purposes listed for it "
                "(purpose_limited: true)"
            )
        return self


class ParentalConsentMethod(enum.StrEnum):
    """Verifiable parental consent methods recognised by the COPPA rule."""

    SIGNED_FORM = "signed_form"
    PAYMENT_CARD = "payment_card"
    KNOWLEDGE_BASED = "knowledge_based"
    GOVERNMENT_ID = "government_id"
    EMAIL_PLUS = "email_plus"


class Children(Strict):
    """How children are kept out, or let in with a parent's consent."""

    minimum_age: int = Field(default=13, ge=13, le=21)
    """Below this age a sign-up is refused (COPPA: 13 at least)."""
    child_accounts: Annotated[str, Field(pattern=r"^(refused|with_parental_consent)$")] = "refused"
    parental_consent_methods: list[ParentalConsentMethod] = Field(default_factory=list)
    parental_consent_window: Period = Field(
        default_factory=lambda: Period(amount=14, unit=TimeUnit.DAY)
    )
    retry_block: Period = Field(default_factory=lambda: Period(amount=1, unit=TimeUnit.DAY))
    """How long a browser refused at the age screen stays refused, whatever date it enters next."""
    opt_in_age: int = Field(default=16, ge=13, le=21)
    """Below this age, sale and sharing need opt-in (CCPA: 16)."""

    @model_validator(mode="after")
    def _methods_when_accounts_allowed(self) -> Self:
        if self.child_accounts == "with_parental_consent" and not self.parental_consent_methods:
            raise ValueError("child accounts with parental consent need parental_consent_methods")
        if self.opt_in_age < self.minimum_age:
            raise ValueError("opt_in_age cannot be below minimum_age")
        return self


class ConsentRequirement(enum.StrEnum):
    """Whether a cookie category needs the person's choice."""

    NONE = "none"
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class Tracker(Strict):
    """A cookie, pixel or local-storage item set on the person's browser."""

    name: Text
    kind: Annotated[str, Field(pattern=r"^(cookie|pixel|local_storage)$")] = "cookie"
    provider: Key | None = None
    """The recipient that sets or reads it; absent for the organization's own."""
    lifetime: Period


class CookieCategory(Strict):
    """A consent category of cookies and trackers."""

    name: Text
    description: Text
    consent: ConsentRequirement
    purposes: list[Key] = Field(default_factory=list)
    trackers: list[Tracker] = Field(default_factory=list)


class DoNotTrackAnswer(enum.StrEnum):
    """How a browser's Do Not Track header is answered."""

    NOT_HONORED = "not_honored"
    OPT_OUT_OF_SALE_AND_SHARING = "opt_out_of_sale_and_sharing"


class GpcAnswer(enum.StrEnum):
    """How the Global Privacy Control signal is answered."""

    OPT_OUT_OF_SALE_AND_SHARING = "opt_out_of_sale_and_sharing"
    NOT_HONORED = "not_honored"


class Signals(Strict):
    """Answers to browser privacy signals."""

    do_not_track: DoNotTrackAnswer
    global_privacy_control: GpcAnswer


class Analytics(Strict):
    """Visitor counting without identity (the seed's IP-address and aggregate-data promises)."""

    salt_rotation: Period
    """How often the random salt behind unique-visitor counts is replaced."""
    salt_kept_for: Period
    """How long an old salt survives before it is deleted."""
    minimum_reported_count: int = Field(ge=2)
    """Aggregates smaller than this are hidden in reports."""


class MaterialChangeNotice(Strict):
    """How people are told of a material change to the policy."""

    home_page: bool = True
    email_subscribers: bool = False


class Notices(Strict):
    """Notices the policy promises."""

    material_change: MaterialChangeNotice = Field(default_factory=MaterialChangeNotice)
    links_to_other_sites: bool = True
    """The site links to other sites whose practices this policy does not cover."""
    user_content_is_public: bool = True
    """Content people submit may be published (so it is scanned and redacted first)."""


class RequestKind(enum.StrEnum):
    """What a person can ask for (CCPA 1798.100 to 1798.125; GDPR articles 15 to 21)."""

    ACCESS = "access"
    PORTABILITY = "portability"
    CORRECTION = "correction"
    DELETION = "deletion"
    OPT_OUT_SALE_SHARING = "opt_out_sale_sharing"
    LIMIT_SENSITIVE = "limit_sensitive"
    UNSUBSCRIBE = "unsubscribe"


OPT_OUT_KINDS = frozenset(
    {RequestKind.OPT_OUT_SALE_SHARING, RequestKind.LIMIT_SENSITIVE, RequestKind.UNSUBSCRIBE}
)
"""Requests the law forbids making depend on proof of identity (Cal. Code Regs. tit. 11,
sections 7026(d) and 7027(f))."""


class VerificationTier(enum.StrEnum):
    """How sure Pledge must be of who asks (Cal. Code Regs. tit. 11, sections 7060 to 7062).

    The e-mail address proven by a one-time code counts as the first data point."""

    NONE = "none"
    EMAIL_CODE = "email_code"
    TWO_DATA_POINTS = "two_data_points"
    THREE_DATA_POINTS_AND_DECLARATION = "three_data_points_and_declaration"

    @property
    def data_points(self) -> int:
        """How many data points must match, the proven e-mail address included."""
        return {"none": 0, "email_code": 1, "two_data_points": 2}.get(self.value, 3)


def _default_verification() -> dict[RequestKind, VerificationTier]:
    tiers = dict.fromkeys(OPT_OUT_KINDS, VerificationTier.NONE)
    tiers[RequestKind.ACCESS] = VerificationTier.THREE_DATA_POINTS_AND_DECLARATION
    tiers[RequestKind.PORTABILITY] = VerificationTier.THREE_DATA_POINTS_AND_DECLARATION
    tiers[RequestKind.CORRECTION] = VerificationTier.TWO_DATA_POINTS
    tiers[RequestKind.DELETION] = VerificationTier.TWO_DATA_POINTS
    return tiers


DEFAULT_APPEAL = (
    "If you disagree with this answer, reply to this message or write to the privacy contact "
    "in our privacy policy within 60 days and say why; a person who did not take the first "
    "decision will review it and answer within 45 days. You may also complain to your state "
    "attorney general or, in the European Economic Area or the United Kingdom, to your data "
    "protection authority."
)


class PrivacyRequests(Strict):
    """How privacy requests are verified, approved and answered."""

    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "America/Los_Angeles"
    """The business's time zone: the day a request arrives is counted in it."""
    verification: dict[RequestKind, VerificationTier] = Field(default_factory=_default_verification)
    """The tier each kind of request needs; kinds left out take the default."""
    data_points: list[Key] = Field(
        default_factory=lambda: [
            "user.name",
            "user.contact.phone_number",
            "user.contact.address.postal_code",
            "user.demographic.date_of_birth",
        ]
    )
    """Categories a person may be asked to repeat, beyond the e-mail address, to prove who they
    are; each is compared with the value the vault holds."""
    attempts: int = Field(default=3, ge=1, le=10)
    """Wrong sets of data points allowed before a request is denied as unverifiable."""
    staff_approval: list[RequestKind] = Field(
        default_factory=lambda: [RequestKind.CORRECTION, RequestKind.DELETION]
    )
    """Verified requests of these kinds wait for a staff member's approval; others are
    fulfilled at once."""
    package_link: Period = Field(default_factory=lambda: Period(amount=7, unit=TimeUnit.DAY))
    """How long the download link of an access package works."""
    records_kept: Period = Field(default_factory=lambda: Period(amount=24, unit=TimeUnit.MONTH))
    """How long a closed request's record is kept (CCPA: 24 months at least)."""
    appeal_instructions: Text = DEFAULT_APPEAL

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{value}' is not an IANA time zone (e.g. America/Los_Angeles)"
            ) from None
        return value

    @model_validator(mode="after")
    def _lawful(self) -> Self:
        for kind in OPT_OUT_KINDS:
            if self.verification.get(kind, VerificationTier.NONE) is not VerificationTier.NONE:
                raise ValueError(f"'{kind.value}' requests cannot require verification")
        for kind in RequestKind:
            if kind not in OPT_OUT_KINDS and self.verification.get(kind) is VerificationTier.NONE:
                raise ValueError(f"'{kind.value}' requests need a verification tier")
        if self.records_kept.approximate_days() < 24 * 30.44 - 0.5:
            raise ValueError("request records must be kept 24 months at least")
        return self

    def tier(self, kind: RequestKind) -> VerificationTier:
        """The tier `kind` needs."""
        return self.verification.get(kind) or _default_verification()[kind]


class PolicyDocument(Strict):
    """A whole policy file."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    effective_date: dt.date
    material: bool
    """This version changes something people would want to know before it applies to them."""
    summary_of_changes: list[Text] = Field(default_factory=list)
    organization: Organization
    data_categories: dict[Key, DataCategory] = Field(min_length=1)
    purposes: dict[Key, Purpose] = Field(min_length=1)
    collection_points: dict[Key, CollectionPoint] = Field(min_length=1)
    recipients: dict[Key, Recipient] = Field(default_factory=dict)
    children: Children
    cookies: dict[Key, CookieCategory] = Field(default_factory=dict)
    signals: Signals
    analytics: Analytics
    notices: Notices = Field(default_factory=Notices)
    requests: PrivacyRequests = Field(default_factory=PrivacyRequests)

    def purpose_name(self, key: str) -> str:
        """The purpose's human name (declared, or derived from its key)."""
        purpose = self.purposes.get(key)
        if purpose is not None and purpose.name:
            return purpose.name
        return key.rsplit(".", 1)[-1].replace("_", " ").capitalize()

    def category_name(self, key: str) -> str:
        """The category's human name (declared, or derived from its key)."""
        category = self.data_categories.get(key)
        if category is not None and category.name:
            return category.name
        return key.rsplit(".", 1)[-1].replace("_", " ").capitalize()


Retention.model_rebuild()

ENTRY_SECTIONS: dict[str, type[BaseModel]] = {
    "data_categories": DataCategory,
    "purposes": Purpose,
    "collection_points": CollectionPoint,
    "recipients": Recipient,
    "cookies": CookieCategory,
}
"""Sections that are a mapping of key to entry; each entry is validated on its own."""
