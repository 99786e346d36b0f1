"""User-level K-fold cross-validation of linear-probe recipes on real photos (issue 11).

    python benchmarks/real_photos_cv.py --data ../shared/data/instagram-dev \
        --pairs PAIRS.parquet --cache /tmp/iipa-cv [--l2 1] [--seeds 0,1,2] [--json cv.json]

PAIRS is built from the data folder by ``iipa pairs build --posts DATA/posts.csv --images
DATA/images --max-caption-words 1000000 --any-hashtags --any-mentions`` (the paper's rules
without the caption rules); its matched PDIPs of every split are the held-out test pairs.

Folds are by account over every account of ``posts.csv`` (seeded). For each fold and each
recipe variant, a pairwise logistic probe (``iipa.train.probe``) is fitted on frozen ImageNet
EfficientNet-Lite0 features of the other folds' accounts; its L2 strength is fixed (``--l2``)
or chosen inside the training folds (nested: 20 % of the training accounts held out, judged
on their within-user pairs with P >= 0.95 at most 10 days apart, then refitted on all
training accounts). The held-out fold's PDIPs are scored once. Predictions are pooled over
folds: one accuracy over all PDIPs with a 95 % Wilson interval, plus the per-fold spread.
With several ``--seeds`` (fold assignments) the table has one row per seed and the summary
the mean: one assignment's luck moves the figure by about +-0.01.

Features (bf16 autocast on CPU, the profile's ``prepare``: final pooled 1280-d features and
the mean-pooled outputs of stages 2-6, i.e. the head input of ``efficientnet_lite0_ms``) are
cached in ``--cache``, never in the repository.

The shipped ``instagram-lite0`` is recipe ``c`` with L2 1 trained on every account by
``iipa train`` (see ``benchmarks/ship_real_model.py``, which puts this script's ``--json``
estimate into its card).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iipa.backbones.popularity_net import PopularityNet
from iipa.evaluate import pairwise_accuracy
from iipa.train import allpairs
from iipa.train.probe import choose_l2

ARCH = "efficientnet_lite0"
L2_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
SELECT = allpairs.WithinUserRules(threshold=0.95, max_gap_days=10.0)
# variant -> (feature set, training pairs)
VARIANTS = {
    "a: matched PDIPs, final features": ("final", "pdip"),
    "b1: within-user pairs <=10 d, final features": ("final", "gap10"),
    "b2: within-user pairs any gap, final features": ("final", "anygap"),
    "c: within-user pairs <=10 d, multi-stage features": ("stages", "gap10"),
    "c2: matched PDIPs, multi-stage features": ("stages", "pdip"),
}


# -- features ------------------------------------------------------------------------------
@torch.no_grad()
def extract(ids: list[str], images: Path) -> tuple[np.ndarray, np.ndarray]:
    model = PopularityNet(ARCH, pretrained=True).eval()
    net, prof = model.net, model.profile
    final, pooled = [], []
    for k in range(0, len(ids), 32):
        x = torch.stack([prof.prepare(images / f"{p}.jpg") for p in ids[k:k + 32]])
        x = prof.normalize(x).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = net.bn1(net.conv_stem(x))
            pools = []
            for s, block in enumerate(net.blocks):
                h = block(h)
                if s >= 2:
                    pools.append(h.float().mean((2, 3)))
            f = net.forward_head(net.bn2(net.conv_head(h)), pre_logits=True)
        final.append(f.float().numpy())
        pooled.append(torch.cat(pools, 1).numpy())
        if k % 640 == 0:
            print(f"extracted {k + len(x)}/{len(ids)}", file=sys.stderr, flush=True)
    return np.concatenate(final), np.concatenate(pooled)


def features(cache: Path, ids: list[str], images: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Cached features of ``ids``, extracting the missing ones."""
    cache.mkdir(parents=True, exist_ok=True)
    files = {"ids": cache / "lite0_ids.csv", "final": cache / "lite0_final.npy", "stages": cache / "lite0_stages.npy"}
    if files["ids"].is_file():
        have = pd.read_csv(files["ids"]).iloc[:, 0].astype(str).tolist()
        final, stages = np.load(files["final"]), np.load(files["stages"])
    else:
        have, final, stages = [], np.zeros((0, 1280), np.float32), np.zeros((0, 744), np.float32)
    missing = sorted(set(ids) - set(have))
    if missing:
        print(f"extracting features of {len(missing)} images into {cache}", file=sys.stderr, flush=True)
        f, s = extract(missing, images)
        have, final, stages = have + missing, np.concatenate([final, f]), np.concatenate([stages, s])
        pd.Series(have, name="post_id").to_csv(files["ids"], index=False)
        np.save(files["final"], final)
        np.save(files["stages"], stages)
    index = {p: i for i, p in enumerate(have)}
    return index, {"final": final, "stages": np.concatenate([final, stages], 1)}


# -- pairs and fits ------------------------------------------------------------------------
def training_pairs(kind: str, users: set[str], posts: pd.DataFrame, pdips: pd.DataFrame) -> pd.DataFrame:
    if kind == "pdip":
        return pdips[pdips["user_id"].astype(str).isin(users)]
    gap = 10.0 if kind == "gap10" else None
    return allpairs.within_user_pairs(posts, users, allpairs.WithinUserRules(threshold=0.5, max_gap_days=gap))


def fit(F: np.ndarray, index: dict[str, int], train: pd.DataFrame, select: pd.DataFrame | None,
        grid: tuple[float, ...]) -> dict:
    """choose_l2 on the rows of the images involved (standardised on training images only)."""
    ids = sorted(set(train["high_id"]) | set(train["low_id"]))
    extra = sorted((set(select["high_id"]) | set(select["low_id"])) - set(ids)) if select is not None else []
    rows = np.array([index[p] for p in ids + extra])
    local = {p: i for i, p in enumerate(ids + extra)}
    X = F[rows].astype(np.float64)
    n_train = len(ids)
    mu, sd = X[:n_train].mean(0), X[:n_train].std(0) + 1e-6
    Z = (X - mu) / sd  # fit in standardised units; choose_l2 rescales by the std of what it gets
    tr = (train["high_id"].map(local).to_numpy(), train["low_id"].map(local).to_numpy(),
          train["p"].fillna(1.0).to_numpy(np.float64) if "p" in train else np.ones(len(train)))
    sel = (select["high_id"].map(local).to_numpy(), select["low_id"].map(local).to_numpy()) if select is not None else None
    out = choose_l2(Z[:n_train] if sel is None else Z, tr, sel, grid=grid)
    w = out["w"] / sd  # raw feature units
    return {"l2": out["l2"], "w": w, "b": float(-(mu @ w))}


def nested_fit(F, index, kind, users, posts, pdips, seed, l2: float | None = None) -> dict:
    """L2 chosen on 20 % of ``users`` held out (or ``l2``, fixed a priori), then the fit on all ``users``."""
    if l2 is not None:
        return fit(F, index, training_pairs(kind, users, posts, pdips), None, (l2,))
    order = sorted(users)
    np.random.default_rng(seed).shuffle(order)
    inner_val = set(order[: max(1, len(order) // 5)])
    inner = fit(F, index, training_pairs(kind, users - inner_val, posts, pdips),
                allpairs.within_user_pairs(posts, inner_val, SELECT), L2_GRID)
    return fit(F, index, training_pairs(kind, users, posts, pdips), None, (inner["l2"],))


def score_pairs(F, index, model, pairs) -> tuple[np.ndarray, np.ndarray]:
    s = {p: float(F[index[p]] @ model["w"]) for p in set(pairs["high_id"]) | set(pairs["low_id"])}
    return pairs["high_id"].map(s).to_numpy(), pairs["low_id"].map(s).to_numpy()


def cross_validate(feats, index, posts, pdips, folds: int, seed: int, variants: list[str],
                   l2: float | None = None) -> list[dict]:
    accounts = sorted(posts["user_id"].astype(str).unique())
    np.random.default_rng(seed).shuffle(accounts)
    fold_of = {u: k % folds for k, u in enumerate(accounts)}
    pdips = pdips.assign(fold=pdips["user_id"].astype(str).map(fold_of))
    rows = []
    for name in variants:
        feat, kind = VARIANTS[name]
        hi_all, lo_all, per_fold, l2s, t0 = [], [], [], [], time.time()
        for k in range(folds):
            train_users = {u for u, f in fold_of.items() if f != k}
            model = nested_fit(feats[feat], index, kind, train_users, posts, pdips, seed + k, l2)
            held = pdips[pdips["fold"] == k]
            hi, lo = score_pairs(feats[feat], index, model, held)
            per_fold.append(pairwise_accuracy(hi, lo)["accuracy"])
            hi_all.append(hi)
            lo_all.append(lo)
            l2s.append(model["l2"])
        r = pairwise_accuracy(np.concatenate(hi_all), np.concatenate(lo_all))
        rows.append({"variant": name, "seed": seed, "accuracy": r["accuracy"], "ci95": r["ci95"], "n": r["n"],
                     "folds": per_fold, "l2": l2s, "seconds": time.time() - t0})
        print(table_row(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per variant: the mean over fold seeds, with the Wilson interval of that accuracy on the
    pooled PDIPs (the same pairs in every seed; only the training folds change)."""
    from iipa.evaluate import wilson_interval

    out = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        acc, n = float(np.mean([r["accuracy"] for r in mine])), mine[0]["n"]
        out[name] = {"accuracy": acc, "ci95": list(wilson_interval(acc * n, n)), "n": n,
                     "per_seed": [r["accuracy"] for r in mine], "seeds": [r["seed"] for r in mine],
                     "per_fold": [r["folds"] for r in mine], "l2": [r["l2"] for r in mine]}
    return out


def table_row(r: dict) -> str:
    f = np.array(r["folds"])
    return (f"| {r['variant']} (seed {r['seed']}) | {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {r['n']} | "
            f"{' '.join(f'{a:.3f}' for a in f)} | {f.mean():.3f} +- {f.std(ddof=1):.3f} | "
            f"{','.join(f'{v:g}' for v in r['l2'])} | {r['seconds']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with posts.csv and images/")
    ap.add_argument("--pairs", required=True, help="pairs table built from the data folder (see above)")
    ap.add_argument("--cache", required=True, help="scratch folder for cached features (not the repository)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="all", help="comma-separated variant letters (a,b1,b2,c,c2) or 'all'")
    ap.add_argument("--l2", type=float, help="fixed L2 for every fold instead of the nested choice")
    ap.add_argument("--seeds", help="comma-separated fold seeds (default: --seed); the summary gives their mean")
    ap.add_argument("--json", help="write the rows and the per-variant summary here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    posts = allpairs.read_posts(data / "posts.csv")
    posts = posts[posts["post_id"].astype(str).map(lambda p: (data / "images" / f"{p}.jpg").is_file())]
    pdips = pd.read_parquet(args.pairs)
    index, feats = features(Path(args.cache), posts["post_id"].astype(str).tolist(), data / "images")
    wanted = list(VARIANTS) if args.variants == "all" else [
        v for v in VARIANTS if v.split(":")[0] in args.variants.split(",")]
    print(f"{args.folds}-fold CV by account: {posts['user_id'].nunique()} accounts, {len(pdips)} held-out PDIPs "
          f"of {pdips['user_id'].nunique()} accounts; L2 " + (f"fixed {args.l2:g}" if args.l2 else f"nested from {L2_GRID}"))
    print("| variant | pooled accuracy [95% Wilson] | PDIPs | per fold | fold mean +- sd | L2 per fold | s |")
    print("|---|---|---|---|---|---|---|")
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    rows = [r for seed in seeds for r in cross_validate(feats, index, posts, pdips, args.folds, seed, wanted, args.l2)]
    summary = summarise(rows)
    for name, r in summary.items():
        print(f"{name}: mean over fold seeds {r['accuracy']:.4f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
              f"(seeds {', '.join(f'{a:.3f}' for a in r['per_seed'])})")
    if args.json:
        from iipa.fileio import write_json

        write_json(args.json, {"folds": args.folds, "seeds": seeds, "l2": args.l2, "rows": rows, "summary": summary,
                               "accounts": int(posts["user_id"].nunique()), "pdips": int(len(pdips))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
