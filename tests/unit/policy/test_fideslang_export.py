"""The fideslang manifest of a policy parses with fideslang's own models."""

from __future__ import annotations

from pathlib import Path

from fideslang.models import Taxonomy

from pledge.policy import export_fideslang, load_policy_file

REFERENCE = Path(__file__).resolve().parents[3] / "policies" / "reference.yaml"


def test_the_reference_policy_exports_a_manifest_fideslang_parses() -> None:
    document = load_policy_file(REFERENCE).document
    manifest = export_fideslang(document)
    taxonomy = Taxonomy.model_validate(manifest)
    (system,) = taxonomy.system
    assert system.legal_name == "Aura Imaging, Inc."
    uses = {d.data_use for d in system.privacy_declarations}
    assert "marketing.communications.email" in uses
    assert "third_party_sharing.affiliate_marketing" in uses


def test_custom_taxonomy_keys_travel_with_their_parents() -> None:
    manifest = export_fideslang(load_policy_file(REFERENCE).document)
    custom_uses = {u["fides_key"]: u["parent_key"] for u in manifest["data_use"]}
    assert custom_uses["marketing.communications.postal"] == "marketing.communications"
    custom_categories = {c["fides_key"] for c in manifest["data_category"]}
    assert "user.demographic.income_range" in custom_categories
    assert "user.contact.email" not in custom_categories


def test_each_declaration_names_its_legal_basis_recipients_and_retention() -> None:
    manifest = export_fideslang(load_policy_file(REFERENCE).document)
    declarations = {d["data_use"]: d for d in manifest["system"][0]["privacy_declarations"]}
    affiliates = declarations["third_party_sharing.affiliate_marketing"]
    assert affiliates["legal_basis_for_processing"] == "Legitimate interests"
    assert affiliates["third_parties"] == "Example Affiliate Brands, Inc."
    assert "user.contact.email" in affiliates["shared_categories"]
    email = declarations["marketing.communications.email"]
    assert email["legal_basis_for_processing"] == "Consent"
    # The longest retention of the categories it uses: 3 years, in days.
    assert email["retention_period"] == "1096"
    tax = declarations["essential.legal_obligation"]
    assert int(tax["retention_period"]) >= 7 * 365
