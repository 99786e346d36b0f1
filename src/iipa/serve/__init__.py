"""HTTP scoring service: ``create_app(model, ServeSettings(...))`` and ``iipa serve``."""

from iipa._lazy import lazy_exports

# Lazy: `iipa serve --help` reads ServeSettings' defaults without importing FastAPI or torch.
_EXPORTS = {"create_app": "iipa.serve.app", "ServeSettings": "iipa.serve.settings"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
