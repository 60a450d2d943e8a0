"""The policy file: its model, loading and validation, rendering, and published versions."""

from pledge.policy.document import PolicyDocument
from pledge.policy.fideslang_export import export_fideslang
from pledge.policy.loader import (
    LoadedPolicy,
    PolicyError,
    PolicyInvalid,
    load_policy_file,
    load_policy_text,
)
from pledge.policy.rendering import render_policy
from pledge.policy.routes import api as api_routes
from pledge.policy.routes import pages as page_routes
from pledge.policy.rules import (
    Change,
    PurposeMap,
    compile_purpose_map,
    diff_policies,
    retention_changes,
)
from pledge.policy.service import (
    PublishedVersion,
    current_version,
    find_version,
    list_versions,
    policy_in_force,
    publish_policy,
)

__all__ = [
    "Change",
    "LoadedPolicy",
    "PolicyDocument",
    "PolicyError",
    "PolicyInvalid",
    "PublishedVersion",
    "PurposeMap",
    "api_routes",
    "compile_purpose_map",
    "current_version",
    "diff_policies",
    "export_fideslang",
    "find_version",
    "list_versions",
    "load_policy_file",
    "load_policy_text",
    "page_routes",
    "policy_in_force",
    "publish_policy",
    "render_policy",
    "retention_changes",
]
