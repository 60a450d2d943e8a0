"""What every HTML page of Pledge shares: the page layout, the template environment, and the
check of where a form POST comes from."""

from pledge.web.origins import form_post_allowed, post_origin_allowed, web_origin
from pledge.web.pages import page_templates

__all__ = ["form_post_allowed", "page_templates", "post_origin_allowed", "web_origin"]
