"""Turn an ``iipa train`` run on every instagram-dev account into the model shipped inside the package.

    iipa pairs build DATA/posts.csv --out all-pairs \\
        --max-caption-words 1000000 --any-hashtags --any-mentions --val 0 --test 0
    iipa train --posts DATA/posts.csv --pairs all-pairs/pairs.parquet --images DATA/images \\
        --out runs/ship --backbone efficientnet_lite0_ms --probe-l2 1 --no-hflip --draft-decode
    python benchmarks/calibration_cv.py --data DATA --pairs all-pairs/pairs.parquet --cache /tmp/iipa-calib \\
        --seeds 0,1 --deg-weights 0,0.1 --flat-share 1 --json calib.json
    python benchmarks/ship_real_model.py --run runs/ship --cv calib.json --quality-weight 0.1

The run trains on every account (the model is judged on other accounts, so it learns from all
of these), so it has no held-out accounts of its own: its card gives the cross-validated
accuracy of the same recipe as the estimate for unseen accounts. The card's facts (training
data, that estimate, the earlier shipped models' figures, baselines, limits) are declared in
``src/iipa/model/named_cards.py``, not written into the file: this script packages the run with
:func:`iipa.packaging.package_weights` (the trainer's facts only, no local paths) and prints the
estimate block measured by ``--cv`` for ``named_cards.LITE0_ESTIMATE``; the card shows the
declaration, so paste the block there when it changed. Training with ``--draft-decode`` records
the decoding the shipped profile uses (on 299 px JPEGs draft and exact decoding give the same
pixels). Regenerate the ONNX companion afterwards:
``iipa export --model instagram-lite0 --output src/iipa/assets/weights/instagram-lite0.onnx --check``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iipa.model.cardschema import HEADLINE
from iipa.model.weights import get_weights
from iipa.packaging import package_weights

ROOT = Path(__file__).resolve().parents[1]


def estimate_from_cv(path: str, variant: str) -> dict:
    """The card's estimate for unseen accounts: ``real_photos_cv.py --json``'s summary of ``variant``."""
    cv = json.loads(Path(path).read_text(encoding="utf-8"))
    name = next((v for v in cv["summary"] if v.split(":")[0] == variant), None)
    if name is None:
        raise SystemExit(f"{path}: no variant {variant!r} (has {', '.join(cv['summary'])})")
    r = cv["summary"][name]
    return {"accuracy": round(r["accuracy"], 4), "ci95": [round(x, 4) for x in r["ci95"]], "pairs": r["n"],
            "per_seed": [round(a, 4) for a in r["per_seed"]], "seeds": r["seeds"],
            "per_fold": [[round(a, 4) for a in f] for f in r["per_fold"]], "l2": cv["l2"],
            "what": f"estimate for unseen accounts: {cv['folds']}-fold cross-validation by account over all "
                    f"{cv['accounts']} accounts of instagram-dev of this recipe ({name}), mean over "
                    f"{len(r['seeds'])} fold assignments; held-out matched PDIPs pooled over folds, 95 % Wilson "
                    "interval of that mean on the pooled PDIPs"}


def estimate_from_calibration_cv(path: str, weight: float) -> dict:
    """The card's estimate from ``calibration_cv.py --json`` rows of quality-pair weight
    ``weight``: accuracy of the default view count and the calibrated figures, mean over fold
    seeds, with the Wilson interval of that mean on the pooled PDIPs."""
    from iipa.evaluate import wilson_interval

    rows = [r for r in json.loads(Path(path).read_text(encoding="utf-8")) if r["deg_weight"] == weight]
    if not rows:
        raise SystemExit(f"{path}: no rows with quality-pair weight {weight}")
    v = [r["views1"] for r in rows]
    acc, n = sum(x["accuracy"] for x in v) / len(v), v[0]["n"]
    mean = lambda key: round(sum(x[key] for x in v) / len(v), 4)  # noqa: E731
    return {"accuracy": round(acc, 4), "ci95": [round(x, 4) for x in wilson_interval(acc * n, n)], "pairs": n,
            "per_seed": [round(x["accuracy"], 4) for x in v], "seeds": [r["seed"] for r in rows],
            "mean_confidence": mean("mean_confidence_cal"), "ece": mean("ece_cal"), "log_loss": mean("log_loss_cal"),
            "brier": mean("brier_cal"), "ece_uncalibrated": mean("ece_raw"),
            "beats_degraded_copies": {k: round(sum(r["beats"][k] for r in rows) / len(rows), 4)
                                      for k in rows[0]["beats"]},
            "what": "estimate for unseen accounts: 5-fold cross-validation by account over all 572 accounts of "
                    f"instagram-dev of this recipe (benchmarks/calibration_cv.py, quality-pair weight {weight:g}, "
                    f"temperature fitted inside the training folds), mean over {len(rows)} fold assignments; "
                    "held-out matched PDIPs pooled over folds, 95 % Wilson interval of that mean"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="run folder of `iipa train` (default recipe, every account)")
    ap.add_argument("--cv", required=True, help="real_photos_cv.py --json output for the same recipe, or "
                                                 "calibration_cv.py --json output with --quality-weight")
    ap.add_argument("--quality-weight", type=float, help="read --cv as calibration_cv.py rows of this weight")
    ap.add_argument("--variant", default="c", help="the CV variant the run trained (default c)")
    ap.add_argument("--name", default="instagram-lite0")
    ap.add_argument("--out", help="default: src/iipa/assets/weights/<name>.pt")
    args = ap.parse_args(argv)
    estimate = (estimate_from_calibration_cv(args.cv, args.quality_weight) if args.quality_weight is not None
                else estimate_from_cv(args.cv, args.variant))
    out = package_weights(Path(args.run) / "best.pt", args.name,
                          args.out or ROOT / "src" / "iipa" / "assets" / "weights" / f"{args.name}.pt")
    declared = get_weights(args.name).card.validation.get(HEADLINE)
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "estimate": estimate,
                      "declared_estimate_differs": estimate != declared}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
