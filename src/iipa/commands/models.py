"""List the backbones, named weights and preprocessing profiles this iipa knows."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list backbones, named weights and preprocessing profiles"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from iipa.backbones.popularity_net import get_backbone, list_backbones
    from iipa.model.weights import get_weights, list_weights, weights_path
    from iipa.profiles import get_profile, list_profiles

    wide = max(map(len, [*list_backbones(), *list_weights()]))
    pwide = max(map(len, list_profiles()))
    print("backbones (--backbone):")
    for name in list_backbones():
        spec = get_backbone(name)
        print(f"  {name:{wide}s} profile={spec.profile:{pwide}s} ImageNet weights: {spec.pretrained}")
    print("\nnamed weights (--model):")
    for name in list_weights():
        w = get_weights(name)
        state = "cached" if weights_path(w).is_file() else "not downloaded"
        print(f"  {name:{wide}s} {w.arch}, profile={w.profile}, {state} ({weights_path(w)})")
        print(f"  {'':{wide}s} {w.description}")
    print("\npreprocessing profiles:")
    for name in list_profiles():
        print(f"  {name:{pwide}s} {get_profile(name).description}")
    return 0
