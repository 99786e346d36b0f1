"""iipa: intrinsic image popularity assessment (Ding, Ma & Wang, ACM MM 2019)."""

__version__ = "0.1.0"

from iipa.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from iipa.errors import IIPAError, ImageError, WeightsError  # noqa: E402
from iipa.models import PopularityNet, get_backbone, list_backbones, register_backbone  # noqa: E402
from iipa.profiles import Profile, get_profile, list_profiles  # noqa: E402
from iipa.scoring import Scorer, ScoreResult  # noqa: E402
from iipa.weights import list_weights, load_model, register_weights  # noqa: E402

__all__ = [
    "IIPAError", "ImageError", "WeightsError", "PopularityNet", "Profile", "ScoreResult", "Scorer",
    "get_backbone", "get_profile", "list_backbones", "list_profiles", "list_weights",
    "load_checkpoint", "load_model", "register_backbone", "register_weights", "save_checkpoint",
]
