"""The operators' admin area (``/admin``): figures, subscribers, test send, preview."""

from newsletter.web.admin.routes import install, router

__all__ = ["install", "router"]
