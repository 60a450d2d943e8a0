"""Every validation rule of the policy file, each with a failing example naming its place."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pledge.policy import PolicyInvalid, load_policy_file, load_policy_text

REFERENCE = Path(__file__).resolve().parents[3] / "policies" / "reference.yaml"
Raw = dict[str, Any]


@pytest.fixture(scope="module")
def reference_raw() -> Raw:
    loaded: Raw = yaml.safe_load(REFERENCE.read_text())
    return loaded


def errors_after(reference_raw: Raw, mutate: Callable[[Raw], object]) -> list[tuple[str, str]]:
    raw = copy.deepcopy(reference_raw)
    mutate(raw)
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(yaml.safe_dump(raw, sort_keys=False), "policy.yaml")
    return [(e.path, e.message) for e in caught.value.errors]


def set_in(*path: str, value: object) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        node = raw
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def delete_in(*path: str) -> Callable[[Raw], None]:
    def mutate(raw: Raw) -> None:
        node = raw
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def add_custom_category(key: str, **entry: object) -> Callable[[Raw], None]:
    base = {
        "purposes": ["essential.service"],
        "retention": {"period": "1 year", "starts": "collection"},
    }
    return set_in("data_categories", key, value={**base, **entry})


EMAIL_FIELD = ("collection_points", "newsletter", "fields", "email")

CASES = [
    # (id, mutation, expected path, fragment of the expected message)
    (
        "period not parseable",
        set_in("data_categories", "user.name", "retention", "period", value="a while"),
        "data_categories.user.name.retention.period",
        "not a period",
    ),
    (
        "period indefinite",
        set_in("data_categories", "user.name", "retention", "period", value="indefinite"),
        "data_categories.user.name.retention.period",
        "must be finite",
    ),
    (
        "period of zero",
        set_in("data_categories", "user.name", "retention", "period", value="0 days"),
        "data_categories.user.name.retention.period.amount",
        "greater than or equal to 1",
    ),
    (
        "category without retention",
        delete_in("data_categories", "user.name", "retention"),
        "data_categories.user.name.retention",
        "required, but missing",
    ),
    (
        "retention start unknown",
        set_in("data_categories", "user.name", "retention", "starts", value="birth"),
        "data_categories.user.name.retention.starts",
        "should match pattern",
    ),
    (
        "purpose without legal basis",
        delete_in("purposes", "essential.service", "legal_basis"),
        "purposes.essential.service.legal_basis",
        "required, but missing",
    ),
    (
        "legal basis unknown",
        set_in("purposes", "essential.service", "legal_basis", value="because"),
        "purposes.essential.service.legal_basis",
        "Input should be",
    ),
    (
        "category with no purpose",
        set_in("data_categories", "user.name", "purposes", value=[]),
        "data_categories.user.name.purposes",
        "at least 1 item",
    ),
    (
        "category repeats a purpose",
        set_in(
            "data_categories",
            "user.job_title",
            "purposes",
            value=["marketing.communications.email"] * 2,
        ),
        "data_categories.user.job_title.purposes",
        "purpose listed twice",
    ),
    (
        "field without category",
        delete_in(*EMAIL_FIELD, "category"),
        "collection_points.newsletter.fields.email.category",
        "required, but missing",
    ),
    (
        "field without stated purpose",
        set_in(*EMAIL_FIELD, "purposes", value=[]),
        "collection_points.newsletter.fields.email.purposes",
        "at least 1 item",
    ),
    (
        "collection point without fields",
        set_in("collection_points", "newsletter", "fields", value={}),
        "collection_points.newsletter.fields",
        "at least 1 item",
    ),
    (
        "unknown key in a field",
        set_in(*EMAIL_FIELD, "colour", value="blue"),
        "collection_points.newsletter.fields.email.colour",
        "unknown key",
    ),
    (
        "unknown top-level section",
        set_in("dark_patterns", value=True),
        "dark_patterns",
        "unknown key",
    ),
    (
        "key with a space",
        set_in(
            "collection_points",
            "news letter",
            value={"name": "x", "channel": "web_form", "fields": {}},
        ),
        "collection_points.news letter",
        "should match pattern",
    ),
    (
        "bad privacy e-mail",
        set_in("organization", "privacy_email", value="not-an-address"),
        "organization.privacy_email",
        "email",
    ),
    (
        "bad country code",
        set_in("organization", "postal_address", "country", value="USA"),
        "organization.postal_address.country",
        "should match pattern",
    ),
    (
        "processor without address",
        delete_in("recipients", "payment_processor", "postal_address"),
        "recipients.payment_processor",
        "needs a postal_address",
    ),
    (
        "processor without an agreement",
        delete_in("recipients", "payment_processor", "agreement"),
        "recipients.payment_processor",
        "needs an agreement",
    ),
    (
        "agreement that does not limit the recipient's purposes",
        set_in("recipients", "payment_processor", "agreement", "purpose_limited", value=False),
        "recipients.payment_processor",
        "purpose_limited: true",
    ),
    (
        "minimum age below COPPA",
        set_in("children", "minimum_age", value=12),
        "children.minimum_age",
        "greater than or equal to 13",
    ),
    (
        "child accounts without methods",
        set_in("children", "parental_consent_methods", value=[]),
        "children",
        "need parental_consent_methods",
    ),
    (
        "opt-in age below minimum age",
        set_in("children", "minimum_age", value=18),
        "children",
        "opt_in_age cannot be below minimum_age",
    ),
    (
        "unknown category key",
        add_custom_category("aura.frames", name="Frames"),
        "data_categories.aura.frames",
        "not a fideslang data category",
    ),
    (
        "unknown purpose key",
        set_in(
            "purposes",
            "growth_hacking",
            value={"name": "x", "description": "x", "legal_basis": "contract"},
        ),
        "purposes.growth_hacking",
        "not a fideslang data use",
    ),
    (
        "custom key without a name",
        add_custom_category("user.device.frame_serial"),
        "data_categories.user.device.frame_serial.name",
        "needs a name",
    ),
    (
        "category serving an undeclared purpose",
        set_in(
            "data_categories", "user.job_title", "purposes", value=["marketing.communications.fax"]
        ),
        "data_categories.user.job_title.purposes[0]",
        "not a declared purpose",
    ),
    (
        "retention for an undeclared purpose",
        set_in(
            "data_categories",
            "user.name",
            "retention",
            "by_purpose",
            value={"essential.nothing": {"period": "1 year", "reason": "x"}},
        ),
        "data_categories.user.name.retention.by_purpose.essential.nothing",
        "not a declared purpose",
    ),
    (
        "retention for a purpose the category does not serve",
        set_in(
            "data_categories",
            "user.name",
            "retention",
            "by_purpose",
            value={"analytics.reporting": {"period": "1 year", "reason": "x"}},
        ),
        "data_categories.user.name.retention.by_purpose.analytics.reporting",
        "not one of this category",
    ),
    (
        "unknown data subject",
        set_in("collection_points", "newsletter", "subjects", value=["alien"]),
        "collection_points.newsletter.subjects[0]",
        "not a fideslang data subject",
    ),
    (
        "field with an undeclared category",
        set_in(*EMAIL_FIELD, "category", value="user.contact.fax_number"),
        "collection_points.newsletter.fields.email.category",
        "not a declared data category",
    ),
    (
        "field storing an unlinkable category",
        set_in(*EMAIL_FIELD, "category", value="user.device.ip_address"),
        "collection_points.newsletter.fields.email.category",
        "never linkable",
    ),
    (
        "field with an undeclared purpose",
        set_in(*EMAIL_FIELD, "purposes", value=["marketing.telepathy"]),
        "collection_points.newsletter.fields.email.purposes[0]",
        "not a declared purpose",
    ),
    (
        "field purpose its category cannot serve",
        set_in(*EMAIL_FIELD, "purposes", value=["analytics.reporting"]),
        "collection_points.newsletter.fields.email.purposes[0]",
        "not a purpose 'user.contact.email' may serve",
    ),
    (
        "recipient with an undeclared purpose",
        set_in("recipients", "shipping_carrier", "purposes", value=["essential.teleportation"]),
        "recipients.shipping_carrier.purposes[0]",
        "not a declared purpose",
    ),
    (
        "recipient with an undeclared category",
        set_in("recipients", "shipping_carrier", "categories", value=["user.biometric.retinal"]),
        "recipients.shipping_carrier.categories[0]",
        "not a declared data category",
    ),
    (
        "recipient given a category none of its purposes uses",
        set_in(
            "recipients", "shipping_carrier", "categories", value=["user.financial.credit_card"]
        ),
        "recipients.shipping_carrier.categories[0]",
        "serves none of this recipient's purposes",
    ),
    (
        "own direct marketing without a third-party marketing purpose",
        set_in("recipients", "shipping_carrier", "own_direct_marketing", value=True),
        "recipients.shipping_carrier.own_direct_marketing",
        "direct_marketing: third_party",
    ),
    (
        "cookie category with an undeclared purpose",
        set_in("cookies", "analytics", "purposes", value=["analytics.mind_reading"]),
        "cookies.analytics.purposes[0]",
        "not a declared purpose",
    ),
    (
        "tracker from an undeclared recipient",
        set_in(
            "cookies",
            "analytics",
            "trackers",
            value=[{"name": "_x", "provider": "nobody", "lifetime": "1 day"}],
        ),
        "cookies.analytics.trackers[0].provider",
        "not a declared recipient",
    ),
    (
        "sharing purpose under contract",
        set_in(
            "purposes",
            "marketing.advertising.third_party.targeted",
            "legal_basis",
            value="contract",
        ),
        "purposes.marketing.advertising.third_party.targeted.legal_basis",
        "sale or sharing purpose",
    ),
    (
        "direct marketing under legitimate interest",
        set_in(
            "purposes", "marketing.communications.email", "legal_basis", value="legitimate_interest"
        ),
        "purposes.marketing.communications.email.legal_basis",
        "direct-marketing purpose",
    ),
    (
        "GPC ignored while data is sold",
        set_in("signals", "global_privacy_control", value="not_honored"),
        "signals.global_privacy_control",
        "must be honored",
    ),
    (
        "deletion notice by e-mail and webhook at once",
        set_in(
            "recipients",
            "shipping_carrier",
            "deletion_notice",
            value={"email": "a@example.com", "webhook": "https://example.com/hook"},
        ),
        "recipients.shipping_carrier.deletion_notice",
        "exactly one of email or webhook",
    ),
    (
        "requests counted in an unknown time zone",
        set_in("requests", "timezone", value="Mars/Olympus_Mons"),
        "requests.timezone",
        "not an IANA time zone",
    ),
    (
        "an opt-out that asks for proof of identity",
        set_in("requests", "verification", "unsubscribe", value="email_code"),
        "requests",
        "'unsubscribe' requests cannot require verification",
    ),
    (
        "a deletion that asks for no proof",
        set_in("requests", "verification", "deletion", value="none"),
        "requests",
        "'deletion' requests need a verification tier",
    ),
    (
        "request records kept under 24 months",
        set_in("requests", "records_kept", value="23 months"),
        "requests",
        "24 months at least",
    ),
    (
        "a data point the policy does not declare",
        set_in("requests", "data_points", value=["user.contact.fax_number"]),
        "requests.data_points[0]",
        "not a declared data category",
    ),
    (
        "a data point never linked to a person",
        set_in("requests", "data_points", value=["user.device.ip_address"]),
        "requests.data_points[0]",
        "cannot prove one",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_rejects_its_failing_example_and_names_the_place(
    reference_raw: Raw, mutate: Callable[[Raw], object], path: str, fragment: str
) -> None:
    errors = errors_after(reference_raw, mutate)
    assert any(p == path and fragment in m for p, m in errors), errors


def test_the_reference_policy_is_valid() -> None:
    loaded = load_policy_file(REFERENCE)
    assert loaded.document.organization.legal_name == "Aura Imaging, Inc."
    assert len(loaded.content_hash) == 64


def test_a_custom_key_may_extend_another_custom_key_declared_in_the_file(
    reference_raw: Raw,
) -> None:
    raw = copy.deepcopy(reference_raw)
    add_custom_category("user.demographic.industry.subsector", name="Industry subsector")(raw)
    loaded = load_policy_text(yaml.safe_dump(raw))
    assert "user.demographic.industry.subsector" in loaded.document.data_categories


def test_all_problems_in_different_sections_are_reported_at_once(reference_raw: Raw) -> None:
    def break_three_things(raw: Raw) -> None:
        del raw["purposes"]["essential.service"]["legal_basis"]
        raw["data_categories"]["user.name"]["retention"]["period"] = "forever"
        raw["collection_points"]["newsletter"]["fields"]["email"]["category"] = "user.contact.pager"

    paths = {path for path, _ in errors_after(reference_raw, break_three_things)}
    assert {
        "purposes.essential.service.legal_basis",
        "data_categories.user.name.retention.period",
        "collection_points.newsletter.fields.email.category",
    } <= paths


def test_a_reference_to_a_broken_entry_is_not_also_called_dangling(reference_raw: Raw) -> None:
    errors = errors_after(reference_raw, delete_in("purposes", "essential.service", "legal_basis"))
    assert errors == [("purposes.essential.service.legal_basis", "required, but missing")]


def test_malformed_yaml_is_reported_with_its_line() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text("version: '1'\norganization: [unclosed\n", "broken.yaml")
    (error,) = caught.value.errors
    assert error.file == "broken.yaml"
    assert "not valid YAML" in error.message
    assert error.line is not None


def test_a_duplicate_key_is_reported_with_its_path_and_line() -> None:
    text = REFERENCE.read_text().replace(
        "  newsletter:\n", "  newsletter:\n    name: Shadow copy\n", 1
    )
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(text, "dup.yaml")
    (error,) = caught.value.errors
    assert error.path == "collection_points.newsletter.name"
    assert "duplicate key 'name'" in error.message
    assert text.splitlines()[error.line - 1].strip().startswith("name:")  # type: ignore[operator]


def test_a_policy_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(PolicyInvalid, match="must be a mapping"):
        load_policy_text("- just\n- a list\n")


def test_an_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid, match="cannot read the file"):
        load_policy_file(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00version")
    with pytest.raises(PolicyInvalid, match="not UTF-8"):
        load_policy_file(binary)


def test_errors_print_as_file_line_path_and_message() -> None:
    text = REFERENCE.read_text().replace("legal_basis: consent\n", "legal_basis: maybe\n", 1)
    with pytest.raises(PolicyInvalid) as caught:
        load_policy_text(text, "policies/x.yaml")
    (error,) = caught.value.errors
    line = text.splitlines().index("    legal_basis: maybe") + 1
    assert str(error).startswith(
        f"policies/x.yaml:{line}: purposes.marketing.communications.email.legal_basis: "
    )
