"""Turn a default-recipe run on instagram-dev into the model shipped inside the package.

    python benchmarks/ship_real_model.py --run runs/final --pairs pairs/pairs.parquet \
        --images ../shared/data/instagram-dev/images

Reads RUN/best.pt, scores the held-out *test* users' PDIPs (never seen in training or
model selection), writes the model card's fields (training data, validation and test
accuracy with 95 % intervals, baselines, limits) into the checkpoint's info, strips local
paths from the saved config, and writes ``src/iipa/assets/weights/<name>.pt``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from iipa.checkpoint import load_checkpoint, save_checkpoint
from iipa.evaluate import evaluate_pairs

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ("instagram-dev: public Instagram posts crawled in 2019 by a public university course project "
          "(572 accounts, 8,368 photos stored at 299x299 px, posts from 2015-2017); not redistributed")
# Issue 11's measurements on the same kind of split (unseen users, ~860 matched training pairs).
ISSUE_BASELINES = [
    {"method": "demo model (simulated images)", "accuracy": 0.47, "source": "issue 11"},
    {"method": "iipa train, paper recipe (Lite0, backbone lr 1e-5, 6 epochs)", "accuracy": 0.58, "source": "issue 11"},
    {"method": "hand-crafted colour/brightness/sharpness + logistic regression", "accuracy": "0.56-0.60",
     "source": "issue 11"},
    {"method": "frozen ImageNet Lite0 features + logistic regression (matched PDIPs)", "accuracy": "0.64-0.67",
     "source": "issue 11"},
    {"method": "paper: ResNet-50, 2.4M pairs, their Instagram test set", "accuracy": 0.7665, "source": "paper"},
    {"method": "human majority vote (paper)", "accuracy": 0.72, "source": "paper"},
    {"method": "chance", "accuracy": 0.5, "source": ""},
]
LIMITS = [
    "trained on one domain: public Instagram accounts with 150k-2M followers (median 395k), posts of 2015-2017",
    "trained on 299x299 px copies of the photos: fine detail of larger images is not seen",
    "scores rank photos against each other (same model); they are not like counts and not calibrated across accounts",
    "sees only pixels: captions, hashtags, posting time and the account's audience are not inputs",
    "403 training accounts: styles, subjects and cultures absent from them are guesses",
    "judged on the 82 validation and 83 test accounts of the same crawl; other crawls may score lower",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="run folder of `iipa train` (default recipe)")
    ap.add_argument("--pairs", required=True, help="the pairs table the run used")
    ap.add_argument("--images", required=True)
    ap.add_argument("--name", default="instagram-lite0")
    ap.add_argument("--out", help="default: src/iipa/assets/weights/<name>.pt")
    args = ap.parse_args(argv)
    model = load_checkpoint(Path(args.run) / "best.pt")
    config0 = model.info.get("config") or {}
    if config0.get("fast_decode", True):
        # Trained on 299 px JPEGs, where draft decoding (scale >= 256 px) does not scale: the
        # training pixels are the same under both decodes, so the faster one is recorded.
        model.profile = dataclasses.replace(model.profile, decode="draft")
    # The card's figures come from the scoring path users run (`iipa evaluate` gives the same).
    result = evaluate_pairs(model, args.pairs, args.images, splits=["val", "test"])["splits"]
    test, val = result["test"], result["val"]
    info = dict(model.info)
    metrics, data = info.get("metrics") or {}, info.get("data") or {}
    config = dict(info.get("config") or {})
    local = {}  # local paths of this machine -> their base names
    for key in ("pairs", "images", "posts", "out"):
        if config.get(key):
            local[str(config[key])] = config[key] = os.path.basename(str(config[key]).rstrip("/"))

    def clean(text: str) -> str:
        for path, name in local.items():
            text = text.replace(path, name)
        return text

    if model.reference:
        model.reference = {**model.reference, "source": clean(str(model.reference.get("source", "")))}
    info.update({
        "weights": args.name, "domain": "real", "config": config, "source": f"iipa package ({args.name})",
        "training_data": {"source": SOURCE, "training_users": data.get("train_users"),
                          "training_images": data.get("train_images"), "training_pairs": data.get("train_pairs"),
                          "pairs": clean(data.get("train_source", ""))},
        "validation": {
            "metric": "pairwise accuracy on matched PDIPs of unseen users (iipa pairs build, paper rules without "
                      "caption rules, split by user, seed 0)",
            "validation_users": {"accuracy": val["accuracy"], "ci95": val["ci95"], "pairs": val["n"],
                                 "users": data.get("val_users")},
            "validation_users_all_discriminable_pairs": {
                "accuracy": metrics.get("select_accuracy"), "ci95": metrics.get("select_ci95"),
                "pairs": metrics.get("select_pairs"), "what": "every within-user pair with P >= 0.95, <= 10 days apart",
                "computed_by": "the trainer (bf16 cached trunk features)"},
            "test_users": {"accuracy": test["accuracy"], "ci95": test["ci95"], "pairs": test["n"]},
            "note": "validation users chose the probe's L2 and the epoch; test users were used once, here",
        },
        "baselines": ISSUE_BASELINES,
        "limits": LIMITS,
    })
    model.info = info
    out = Path(args.out or ROOT / "src" / "iipa" / "assets" / "weights" / f"{args.name}.pt")
    save_checkpoint(model, out)
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "test": test,
                      "val": info["validation"]["validation_users"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
