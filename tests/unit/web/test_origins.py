"""Where a form POST may come from: the rule every form of Pledge's pages is checked by."""

from __future__ import annotations

import pytest

from pledge.web import post_origin_allowed

PUBLIC = "https://privacy.example.com/"


@pytest.mark.parametrize(
    ("origin", "referer", "allowed"),
    [
        (None, None, True),  # not a browser
        ("https://privacy.example.com", None, True),
        ("https://PRIVACY.example.com:443", None, True),
        (None, "https://privacy.example.com/privacy-center/preferences?x=1", True),
        ("https://evil.example", None, False),
        ("null", None, False),
        ("http://privacy.example.com", None, False),
        ("https://privacy.example.com:444", None, False),
        ("https://privacy.example.com.evil.example", None, False),
        (None, "https://evil.example/privacy.example.com", False),
        (None, "", False),
        ("https://evil.example", "https://privacy.example.com/", False),  # Origin decides
        ("https://privacy.example.com", "https://evil.example/", True),
        ("not a url", None, False),
        ("https://[::1", None, False),
    ],
)
def test_a_post_is_allowed_only_from_the_public_origin_or_from_no_browser(
    origin: str | None, referer: str | None, allowed: bool
) -> None:
    assert post_origin_allowed(PUBLIC, origin, referer) is allowed


@pytest.mark.parametrize(
    ("fetch_site", "allowed"),
    [("same-origin", True), ("same-site", False), ("cross-site", False), (None, False)],
)
def test_a_null_origin_passes_only_from_a_page_of_the_same_origin(
    fetch_site: str | None, allowed: bool
) -> None:
    # Browsers send `Origin: null` from a no-referrer page, Pledge's own or a hostile one.
    assert post_origin_allowed(PUBLIC, "null", None, fetch_site) is allowed
    assert post_origin_allowed(PUBLIC, "https://evil.example", None, "same-origin") is False
