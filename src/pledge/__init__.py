"""Pledge: a privacy policy as running software."""

__version__ = "0.1.0"
