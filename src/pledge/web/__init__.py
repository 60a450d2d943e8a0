"""What every HTML page of Pledge shares: the page layout and the template environment."""

from pledge.web.pages import page_templates

__all__ = ["page_templates"]
