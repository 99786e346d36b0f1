"""iipa: intrinsic image popularity assessment (Ding, Ma & Wang, ACM MM 2019).

The public API is imported lazily (:mod:`iipa._lazy`), so ``import iipa.simulate`` or
``iipa --help`` does not pay for torch (~0.8 GB RSS and seconds of start-up) unless a model
is actually built.
"""

from __future__ import annotations

from iipa._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "iipa.errors": "IIPAError ImageError WeightsError",
    "iipa.backbones.popularity_net": "PopularityNet get_backbone list_backbones register_backbone",
    "iipa.profiles": "Profile get_profile list_profiles",
    "iipa.model.checkpoint": "save_checkpoint",
    "iipa.model.weights": "list_weights register_weights",
    "iipa.model.record": "ModelRecord load_model resolve_model",
    "iipa.scoring": "Scorer ScoreResult make_scorer",
})
