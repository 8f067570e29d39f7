"""Subscribers: adding, importing and validating them."""
