"""HTTP scoring service: ``create_app(model, ServeSettings(...))`` and ``iipa serve``."""

from iipa._lazy import lazy_exports

# Lazy: `iipa serve --help` reads ServeSettings' defaults without importing FastAPI or torch.
_EXPORTS = {
    "iipa.serve.app": "create_app",
    "iipa.serve.settings": "ServeSettings",
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
