"""Jinja2 environments for the public pages: each package's templates over the shared layout."""

from __future__ import annotations

import jinja2


def page_templates(package: str) -> jinja2.Environment:
    """Templates of `package` (its `templates` folder), able to extend `base.html.j2`. Escaping
    is on: every value a person typed is shown as text, never as markup."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader(package, "templates"),
                jinja2.PackageLoader("pledge.web", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
