"""`iipa demo`: the whole paper pipeline offline on a simulated social network, with a report.

simulate a crawl → build PDIPs (DuckDB) → render the paired posts' images → train the
Siamese ranker (EfficientNet-Lite0 from its packaged ImageNet weights, default recipe) → evaluate on the
test PDIPs → train the absolute-popularity baseline → write ``report.html`` and
``metrics.json``. The simulator knows every image's true intrinsic popularity, so the
report checks the paper's claims against ground truth instead of assuming them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iipa.errors import IIPAError
from iipa.fileio import write_json

if TYPE_CHECKING:  # imported where used: `iipa demo --help` reads DemoConfig without them
    import numpy as np
    import pandas as pd


@dataclass
class DemoConfig:
    """Sizes for a few minutes on 2 CPU cores (the README has the measured CPU time; ``quick``: seconds)."""

    out: str = "demo-output"
    seed: int = 0
    users: int = 2000
    posts_per_user: int = 30
    image_size: int = 160
    backbone: str = "efficientnet_lite0"
    pretrained: str = "imagenet"
    profile: str = "efficientnet-small"
    recipe: str = "default"  # default: linear probe on cached frozen features; paper: end-to-end fine-tuning
    epochs: int | None = None  # paper recipe only (its default 10); the default recipe has no epochs
    batch_size: int = 32
    val: str = "0.15"
    test: str = "0.3"
    baseline_epochs: int = 30  # frozen image features: an epoch is a pass of the MLP
    examples_per_level: int = 3
    gradcam_examples: int = 4
    workers: int | None = None
    progress: bool | None = None  # progress bars within each training stage (None: when stderr is a terminal)

    @classmethod
    def quick(cls, out: str, **changes: Any) -> DemoConfig:
        """A seconds-long run for tests: the `tiny` backbone at 64 px, few users."""
        base = dict(out=out, users=300, posts_per_user=24, image_size=64, backbone="tiny",
                    pretrained="none", profile="small", batch_size=16, baseline_epochs=3,
                    examples_per_level=2, gradcam_examples=2, workers=0)
        base.update(changes)
        return cls(**base)


class _Stages:
    """Numbered progress lines on stderr with elapsed times."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
        self.total, self.n, self.say, self.t0 = total, 0, say, time.perf_counter()

    def __call__(self, text: str) -> None:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {text} (t={time.perf_counter() - self.t0:.0f}s)")


def run_demo(config: DemoConfig, *, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage into ``config.out``; returns the metrics also written to metrics.json."""
    import pandas as pd

    from iipa.pairs.build import build_pairs
    from iipa.simulate import SimConfig, render_images, true_order_agreement, write_crawl
    from iipa.train.config import RECIPES, TrainConfig
    from iipa.train.runner import train

    TrainConfig(recipe=config.recipe, epochs=config.epochs)  # refuses --epochs without the paper recipe, first
    say = say or (lambda s: print(s, file=sys.stderr, flush=True))
    stage = _Stages(7, say)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    stage(f"simulating a crawl: {config.users} users x {config.posts_per_user} posts")
    sim = SimConfig(users=config.users, posts_per_user=config.posts_per_user, seed=config.seed)
    crawl = write_crawl(out / "crawl", sim, reuse=True)

    stage("building popularity-discriminable pairs (DuckDB, paper rules)")
    built = build_pairs(crawl.posts, out / "pdip", seed=config.seed, val=config.val, test=config.test,
                        overwrite=True)
    pairs = built.pairs
    if len(pairs) < 20 or (pairs["split"] == "train").sum() < 10:
        raise IIPAError(f"the simulated crawl gave only {len(pairs)} pairs; use more users")
    pairs_path = built.paths.get("pairs", out / "pdip" / "pairs.parquet")

    stage(f"rendering {2 * len(pairs)} paired images at {config.image_size} px")
    truth = pd.read_parquet(crawl.truth)
    ids = sorted(set(pairs["high_id"]) | set(pairs["low_id"]))
    images = out / "images"
    render_images(ids, truth, images, size=config.image_size)

    stage(f"training the Siamese ranker ({config.backbone}, {config.recipe} recipe)")
    # The demo's own settings go to the recipes that use them; --epochs is passed as given, so a
    # recipe without it refuses it with the recipes' own message.
    used = RECIPES[config.recipe].used
    paper = {k: v for k, v in dict(batch_size=config.batch_size, workers=config.workers,
                                   checkpoint_every=10_000).items() if k in used}
    common = dict(pairs=str(pairs_path), images=str(images), backbone=config.backbone, pretrained=config.pretrained,
                  profile=config.profile, seed=config.seed, progress=config.progress, domain="simulated")
    tcfg = TrainConfig(out=str(out / "run"), recipe=config.recipe, epochs=config.epochs, **common, **paper)
    summary = train(tcfg)

    stage("evaluating on the test pairs (PDIP labels and true intrinsic order)")
    ranker = _evaluate_ranker(out / "run" / "best.pt", pairs, images, truth, config)

    stage(f"training the absolute-popularity baseline ({config.baseline_epochs} epochs)")
    baseline = _run_baseline(crawl.posts, TrainConfig(
        out=str(out / "baseline"), recipe="paper", epochs=config.baseline_epochs, batch_size=config.batch_size,
        workers=config.workers, **common), config, pairs, truth, out)

    stage("writing report.html and metrics.json")
    metrics = {
        "table1": built.stats.get("table1", built.stats),
        "pairs": {"total": int(len(pairs)), **{s: int((pairs["split"] == s).sum()) for s in ("train", "val", "test")}},
        "label_agreement_with_truth": {s: true_order_agreement(pairs[pairs["split"] == s], truth)
                                       for s in ("train", "test")},
        "ranker": ranker["metrics"],
        "baseline": baseline,
        "chance": 0.5,
        "training": {"recipe": config.recipe, **{k: summary.get(k) for k in ("steps", "epochs_completed",
                                                                            "best_val_accuracy", "seconds_this_run")}},
        "config": dataclasses.asdict(config),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(out / "metrics.json", metrics)
    from iipa.demo_report import write_report

    write_report(out / "report.html", metrics, run_dir=out / "run", scored=ranker["scored"],
                 model_path=out / "run" / "best.pt", config=config)
    say(f"done in {metrics['seconds']:.0f}s: open {out / 'report.html'}")
    return metrics


def _accuracy(hi: np.ndarray, lo: np.ndarray) -> dict[str, Any]:
    from iipa.evaluate import pairwise_accuracy

    return pairwise_accuracy(hi, lo)


def _truth_sides(test: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """For each test pair: (scores index of the truly more popular side, of the other)."""
    q = truth.set_index("post_id")["intrinsic"]
    return q.loc[test["high_id"]].to_numpy(), q.loc[test["low_id"]].to_numpy()


def _evaluate_ranker(model_path: Path, pairs: pd.DataFrame, images: Path, truth: pd.DataFrame,
                     config: DemoConfig) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from iipa.images import image_path_for
    from iipa.scoring import make_scorer

    test = pairs[pairs["split"] == "test"].reset_index(drop=True)
    ids = sorted(set(test["high_id"]) | set(test["low_id"]))
    paths = [image_path_for(images, i) for i in ids]
    scorer = make_scorer(model_path, num_workers=config.workers, batch_size=64)
    scored = pd.DataFrame([{"post_id": i, **r.to_dict()} for i, r in zip(ids, scorer.iter_scores(paths))])
    s = scored.set_index("post_id")["score"]
    hi, lo = s.loc[test["high_id"]].to_numpy(), s.loc[test["low_id"]].to_numpy()
    q_hi, q_lo = _truth_sides(test, truth)
    truly_first = q_hi >= q_lo
    t_hi, t_lo = np.where(truly_first, hi, lo), np.where(truly_first, lo, hi)
    scored = scored.merge(truth[["post_id", "intrinsic"]], on="post_id", how="left")
    from scipy.stats import spearmanr

    return {"metrics": {"vs_pdip_labels": _accuracy(hi, lo), "vs_true_order": _accuracy(t_hi, t_lo),
                        "spearman_with_true_intrinsic": float(spearmanr(scored["score"], scored["intrinsic"]).statistic),
                        "reference": scorer.reference},
            "scored": scored}


def _run_baseline(posts: Path, bcfg: Any, config: DemoConfig, pairs: pd.DataFrame, truth: pd.DataFrame,
                  out: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from iipa.train.baseline import run_baseline

    report = run_baseline(posts, bcfg, frozen_image=True)  # end to end it was most of the demo's time
    result = {k: report.get(k) for k in ("pearson_r_train", "pearson_r_test", "train_posts", "test_posts")}
    result["vs_pdip_labels"] = report.get("test_pairs")
    result["image_scalar_vs_pdip_labels"] = report.get("test_pairs_image_scalar_only")
    preds_path = out / "baseline" / "predictions.parquet"
    if preds_path.is_file():
        preds = pd.read_parquet(preds_path).set_index("post_id")["prediction"]
        test = pairs[(pairs["split"] == "test") & pairs["high_id"].isin(preds.index) & pairs["low_id"].isin(preds.index)]
        hi, lo = preds.loc[test["high_id"]].to_numpy(), preds.loc[test["low_id"]].to_numpy()
        q_hi, q_lo = _truth_sides(test, truth)
        first = q_hi >= q_lo
        result["vs_true_order"] = _accuracy(np.where(first, hi, lo), np.where(first, lo, hi))
    return result

