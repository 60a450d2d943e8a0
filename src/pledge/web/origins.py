"""Where a browser's form POST comes from: the check that stops another site's forms (login
CSRF) on every page of Pledge that takes a form. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_origin(url: str) -> tuple[str, str, int] | None:
    """The origin (scheme, host, port) of an http(s) URL or of an `Origin` header's value;
    None for anything else (`null`, a malformed value, another scheme)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def post_origin_allowed(
    public_url: str, origin: str | None, referer: str | None, fetch_site: str | None = None
) -> bool:
    """Whether a form POST may change anything, from its `Origin`, `Referer` and
    `Sec-Fetch-Site` headers. The rule:

    1. With an `Origin` header, its value must be the origin of `public_url` (scheme, host and
       port, compared without case and with default ports filled in). `Origin: null` passes
       only with `Sec-Fetch-Site: same-origin`: a browser sends `null` from a page of Pledge's
       own that hides its address (`no-referrer`), and the same `null` from a hostile page that
       does, or from a sandboxed frame; only the browser-set `Sec-Fetch-Site` tells them apart.
    2. Without `Origin`, a `Referer` header's origin must be that of `public_url`.
    3. With neither, the POST passes: a client that is not a browser (a script, `curl`).

    Browsers send `Origin` with every cross-origin POST, so a form on another site that posts
    here is refused, which stops login CSRF (signing a victim into the attacker's session)."""
    if origin is not None:
        if origin.strip() == "null":
            return fetch_site == "same-origin"
        claimed = origin
    elif referer is not None:
        claimed = referer
    else:
        return True
    expected = web_origin(public_url)
    return expected is not None and web_origin(claimed) == expected


def form_post_allowed(public_url: str, headers: Mapping[str, str]) -> bool:
    """`post_origin_allowed` on a request's headers (`Origin`, `Referer`, `Sec-Fetch-Site`)."""
    return post_origin_allowed(
        public_url, headers.get("origin"), headers.get("referer"), headers.get("sec-fetch-site")
    )
