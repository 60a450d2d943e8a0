"""Demo data for `pledge demo`: the reference policy, published."""

from __future__ import annotations

from dataclasses import dataclass

from pledge.config import REFERENCE_POLICY
from pledge.policy import PublishedVersion, load_policy_file, publish_policy
from pledge.runtime import Runtime


@dataclass(frozen=True)
class DemoSummary:
    """What loading the demo did."""

    policy: PublishedVersion
    policy_created: bool


def load_demo(runtime: Runtime) -> DemoSummary:
    """Publish the reference policy (a no-op when it is already the stored content)."""
    outcome = publish_policy(
        runtime.sessions, load_policy_file(REFERENCE_POLICY), published_by="pledge demo"
    )
    return DemoSummary(policy=outcome.version, policy_created=outcome.created)
