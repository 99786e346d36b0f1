"""Real photos of unseen users: the shipped model's recipe next to the baselines, and its speed.

    python benchmarks/real_photos.py --quick        # shipped recipe, probe, hand-crafted, chance, speed
    python benchmarks/real_photos.py                # + the paper recipe trained here (long on a CPU)

Data: ``../shared/data/instagram-dev`` beside the repository (``--data``). Pairs are built
with the paper's rules minus the caption rules, split by user (seed 0, 20 % validation and
20 % test pairs). Every method here is trained on the training users only, so "validation
users" and "test users" are people whose photos it never saw; every method is scored on the
same pairs; 95 % intervals are Wilson intervals.

The shipped file itself was trained on every account of the folder, these users included:
its row is in-sample and labelled so. Its recipe (``iipa train``'s default: a probe on
multi-stage Lite0 features, every within-user pair, L2 1) is trained here on the training
users to give the out-of-sample figure; ``real_photos_cv.py`` gives the cross-validated one
quoted in the card. Speed: end-to-end scoring (decode, preprocessing, model) of 1080x1080
quality-90 JPEGs, as ``iipa score`` does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from iipa.evaluate import evaluate_pairs, pairwise_accuracy, wilson_interval
from iipa.model.weights import DEFAULT_MODEL
from iipa.pairs.build import build_pairs
from iipa.pairs.rules import RuleConfig
from iipa.pairs.table import attach_images, read_pairs
from iipa.train.probe import fit_pairwise_logistic

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("val", "test")


def ensure_pairs(data: Path, work: Path) -> Path:
    out = work / "pairs"
    if not (out / "pairs.parquet").is_file():
        rules = RuleConfig(max_caption_words=1_000_000, same_hashtags=False, same_mentions=False)
        build_pairs(data / "posts.csv", out, rules=rules, seed=0, val=0.2, test=0.2, split_by_user=True)
    return out / "pairs.parquet"


def handcrafted(path: str) -> list[float]:
    """Brightness, contrast, saturation, colourfulness (Hasler & Suesstrunk 2003), sharpness."""
    img = Image.open(path).convert("RGB").resize((128, 128), Image.BILINEAR)
    rgb = np.asarray(img, dtype=np.float64) / 255
    hsv = np.asarray(img.convert("HSV"), dtype=np.float64) / 255
    rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    lap = np.asarray(img.convert("L").filter(ImageFilter.FIND_EDGES), dtype=np.float64) / 255
    return [hsv[..., 2].mean(), hsv[..., 2].std(), hsv[..., 1].mean(), colourful, lap.var()]


def handcrafted_baseline(pairs: Path, images: Path) -> dict[str, dict]:
    df, _ = attach_images(read_pairs(pairs), images)
    paths = sorted(set(df["high_path"]) | set(df["low_path"]))
    index = {p: i for i, p in enumerate(paths)}
    feats = np.array([handcrafted(p) for p in paths])
    train = df[df["split"] == "train"]
    w, _ = fit_pairwise_logistic(feats, train["high_path"].map(index).to_numpy(),
                                 train["low_path"].map(index).to_numpy(), np.ones(len(train)), l2=0.1)
    scores = feats @ w
    return {s: pairwise_accuracy(scores[df[df["split"] == s]["high_path"].map(index)],
                                 scores[df[df["split"] == s]["low_path"].map(index)]) for s in SPLITS}


def trained(pairs: Path, images: Path, out: Path, **config) -> tuple[dict[str, dict], float]:
    from iipa.train import train
    from iipa.train.config import TrainConfig

    started = time.time()
    summary = train(TrainConfig(pairs=str(pairs), images=str(images), out=str(out), **config))
    seconds = time.time() - started
    return evaluate_pairs(summary["best"], pairs, images, splits=list(SPLITS))["splits"], seconds


def speed(model: str, n: int, work: Path) -> dict[str, float]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from _photos import jpeg_photos

    from iipa.scoring import make_scorer

    paths = []
    for i, data in enumerate(jpeg_photos(n, 1080, seed=0)):
        paths.append(work / f"speed{i:04d}.jpg")
        paths[-1].write_bytes(data)
    scorer = make_scorer(model)
    list(scorer.iter_scores([str(p) for p in paths[:8]]))  # warm-up
    started = time.perf_counter()
    results = list(scorer.iter_scores([str(p) for p in paths]))
    seconds = time.perf_counter() - started
    return {"images": len(results), "seconds": seconds, "images_per_s": len(results) / seconds}


def row(name: str, res: dict[str, dict], seconds: float | None = None) -> str:
    cells = [f"{res[s]['accuracy']:.3f} [{res[s]['ci95'][0]:.3f}, {res[s]['ci95'][1]:.3f}] n={res[s]['n']}"
             for s in SPLITS]
    return f"| {name} | " + " | ".join(cells) + f" | {'' if seconds is None else f'{seconds:.0f} s'} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "instagram-dev"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--work", help="folder for pairs and runs (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="skip training the paper recipe")
    ap.add_argument("--speed-images", type=int, default=128)
    args = ap.parse_args(argv)
    data = Path(args.data)
    images = data / "images"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        pairs = ensure_pairs(data, work)
        lines = ["| method | validation users | test users | train time |", "|---|---|---|---|"]
        recipe, secs = trained(pairs, images, work / "recipe", posts=str(data / "posts.csv"), probe_l2=1.0,
                               hflip=False, max_val_pairs=None)
        lines.append(row("shipped recipe trained here on the training users (`iipa train` default, "
                         "multi-stage Lite0 probe, L2 1)", recipe, secs))
        probe, secs = trained(pairs, images, work / "probe", backbone="efficientnet_lite0",
                              max_val_pairs=None)
        lines.append(row("frozen Lite0 final features + logistic regression (matched PDIPs)", probe, secs))
        if not args.quick:
            paper, secs = trained(pairs, images, work / "paper", recipe="paper", backbone="efficientnet_lite0",
                                  epochs=6, max_val_pairs=None)
            lines.append(row("`iipa train --recipe paper` (Lite0, 6 epochs)", paper, secs))
        lines.append(row("hand-crafted colour/brightness/sharpness + logistic regression",
                         handcrafted_baseline(pairs, images)))
        chance = {s: {"accuracy": 0.5, "ci95": list(wilson_interval(0.5 * probe[s]["n"], probe[s]["n"])),
                      "n": probe[s]["n"]} for s in SPLITS}
        lines.append(row("chance", chance))
        shipped = evaluate_pairs(args.model, pairs, images, splits=list(SPLITS))["splits"]
        lines.append(row(f"the shipped file `{args.model}` (in-sample: trained on every account, these too)",
                         shipped))
        fast = speed(args.model, args.speed_images, work)
    print("\n".join(lines))
    print(f"\nscoring speed of `{args.model}`: {fast['images_per_s']:.1f} images/s end to end "
          f"({fast['images']} JPEGs of 1080x1080 in {fast['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    raise SystemExit(main())
