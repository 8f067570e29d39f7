"""The operators' admin area (``/admin``): figures, subscribers, topics, test send, preview."""

from newsletter.web.admin.imports import IMPORT_FORM_SLACK, IMPORT_PATH
from newsletter.web.admin.routes import install, router

__all__ = ["IMPORT_FORM_SLACK", "IMPORT_PATH", "install", "router"]
