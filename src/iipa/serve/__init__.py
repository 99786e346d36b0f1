"""HTTP scoring service: ``create_app(model, ServeSettings(...))`` and ``iipa serve``."""

from iipa.serve.app import create_app
from iipa.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
