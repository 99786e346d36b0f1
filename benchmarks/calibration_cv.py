"""Cross-validation by account of what the default model's answer means (issue 19): view
count at scoring, temperature calibration and quality pairs that need no likes.

    python benchmarks/calibration_cv.py --data ../shared/data/instagram-dev \
        --pairs PAIRS.parquet --cache /tmp/iipa-calib [--seeds 0,1,2] [--deg-weights 0,0.1,0.3] [--json out.json]

PAIRS: ``iipa pairs build DATA/posts.csv --max-caption-words 1000000 --any-hashtags
--any-mentions --val 0 --test 0`` (the paper's rules minus the caption rules); its 1,041
PDIPs of 437 accounts are the held-out pairs, scored in the fold that holds their account.

Features are the head input of the shipped ``instagram-lite0`` (``efficientnet_lite0_ms``:
final pooled + stage 2-6 means, 2,024 values), computed in fp32 like scoring, through an
ONNX export of the trunk (onnxruntime; |Δ| < 1e-5 against PyTorch) and cached in
``--cache``, never in the repository:
- every photo's centre view (the probe's training features);
- the 10 test-time views of every PDIP photo (``Profile.view_array``: 4 corners + centre,
  each followed by its mirror): the head is linear, so the score of k views is the head of
  the mean of their features, and 1 / 5 / 10 views are read off one extraction;
- for 2 photos per account (seeded): the target's fixed degradations (Gaussian blur sigma
  1.5 % of the short side, a 64 px thumbnail scaled back up, JPEG quality 10) and
  ``iipa.train.degrade``'s random-strength copies used for training, and flat frames.

Per fold (5, by account, several fold seeds): the probe (pairwise logistic, L2 1, within-user
pairs with P >= 0.5 at most 10 days apart, plus quality pairs of weight w) is fitted on the
training accounts; the temperature is fitted on 20 % of the training accounts held out
(their within-user pairs with P >= 0.95 at most 10 days apart) by a probe fitted on the
other 80 %; the held-out fold's PDIPs are scored with 1, 5 and 10 views. Printed per setting:
accuracy for each view count with the exact binomial (McNemar) test on discordant pairs,
mean confidence, ECE (10 bins of 0.05), log-loss and Brier score raw and calibrated with
95 % bootstrap intervals over accounts, and the share of held-out photos that beat each
degraded copy and a black frame.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageFilter

from iipa.calibration import calibration_metrics, fit_temperature
from iipa.train import allpairs
from iipa.train.degrade import FLAT_COLOURS, KINDS, degrade

SOFT = allpairs.WithinUserRules(threshold=0.5, max_gap_days=10.0)
SELECT = allpairs.WithinUserRules(threshold=0.95, max_gap_days=10.0)
TARGET_DEGRADATIONS = ("blur", "thumb", "jpeg10")


# -- features ------------------------------------------------------------------------------
class Extractor:
    """The shipped model's head input through onnxruntime (an export of the trunk)."""

    def __init__(self, cache: Path) -> None:
        import onnxruntime as ort

        from iipa import load_model

        model = load_model("instagram-lite0").float().eval()
        self.profile = model.profile
        onnx_path = cache / "trunk.onnx"
        if not onnx_path.is_file():
            self._export(model, onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    @staticmethod
    def _export(model, path: Path) -> None:
        import copy

        from iipa.model.export import _FromUint8

        trunk = copy.deepcopy(model)
        trunk.net.classifier = torch.nn.Identity()
        x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
        torch.onnx.export(_FromUint8(trunk).eval(), (x,), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["f"], dynamic_axes={"x": {0: "b"}, "f": {0: "b"}})

    def __call__(self, name: str, cache: Path, items: list, crops: int, make) -> dict[str, np.ndarray]:
        file = cache / f"{name}.npz"
        if file.is_file():
            got = np.load(file)
            return {"ids": got["ids"], "X": got["X"]}
        out, buf, t0 = [], [], time.time()

        def flush() -> None:
            batch = np.concatenate(buf)
            out.append(self.session.run(None, {"x": np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0])
            buf.clear()

        for k, item in enumerate(items):
            buf.append(self.profile.view_array(make(item), crops))
            if sum(len(b) for b in buf) >= 40:
                flush()
            if k % 500 == 0:
                print(f"{name}: {k}/{len(items)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        if buf:
            flush()
        X = np.concatenate(out).reshape(len(items), crops, -1).astype(np.float32)
        ids = np.array([str(i) for i in items])
        np.savez(file, ids=ids, X=X)
        return {"ids": ids, "X": X}


def target_degradation(kind: str, path: Path) -> Image.Image:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(0.015 * min(w, h)))
    if kind == "thumb":
        small = img.copy()
        small.thumbnail((64, 64), Image.BICUBIC)
        return small.resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=10)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def load_features(data: Path, cache: Path, posts: pd.DataFrame, pdips: pd.DataFrame) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    ext = Extractor(cache)
    path = lambda p: data / "images" / f"{p}.jpg"  # noqa: E731
    ids = posts["post_id"].astype(str).tolist()
    centre = ext("centre", cache, ids, 1, path)
    pdip_ids = sorted(set(pdips["high_id"].astype(str)) | set(pdips["low_id"].astype(str)))
    views = ext("views10", cache, pdip_ids, 10, path)
    rng = np.random.default_rng(0)
    chosen = sorted(p for lst in posts.groupby("user_id")["post_id"].apply(list)
                    for p in rng.choice(lst, size=min(2, len(lst)), replace=False))
    if (cache / "deg_blur.npz").is_file():  # the photos chosen when the cache was made
        chosen = [str(p) for p in np.load(cache / "deg_blur.npz")["ids"]]
    deg = {k: ext(f"deg_{k}", cache, chosen, 1, lambda p, k=k: target_degradation(k, path(p)))
           for k in TARGET_DEGRADATIONS}
    # training copies: random strengths, every kind, seeded per photo
    train_deg = {k: ext(f"train_{k}", cache, chosen, 1,
                        lambda p, k=k: degrade(Image.open(path(p)), k, random.Random(f"{p}-{k}")))
                 for k in KINDS}
    flat = ext("flat", cache, list(FLAT_COLOURS), 1, lambda c: Image.new("RGB", (299, 299), FLAT_COLOURS[c]))
    V = views["X"].astype(np.float64)
    return {"index": {p: i for i, p in enumerate(centre["ids"])}, "F": centre["X"][:, 0].astype(np.float64),
            "vindex": {p: i for i, p in enumerate(views["ids"])},
            "views": {1: V[:, 8], 5: V[:, [0, 2, 4, 6, 8]].mean(1), 10: V.mean(1)},
            "chosen": list(chosen), "deg": {k: v["X"][:, 0].astype(np.float64) for k, v in deg.items()},
            "train_deg": {k: v["X"][:, 0].astype(np.float64) for k, v in train_deg.items()},
            "flat": dict(zip(flat["ids"], flat["X"][:, 0].astype(np.float64)))}


# -- fits ----------------------------------------------------------------------------------
def fit_probe(X: np.ndarray, hi: np.ndarray, lo: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """Weighted pairwise logistic on standardised features (as iipa.train.probe); raw-unit weights."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = torch.as_tensor((X - mu) / sd)
    hi_t, lo_t, y_t, w_t = (torch.as_tensor(a) for a in (hi, lo, y, w / w.mean()))
    coef = torch.zeros(Z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef], max_iter=300, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        s = Z @ coef
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(s[hi_t] - s[lo_t], y_t, reduction="none")
                * w_t).mean() + l2 * (coef @ coef)
        loss.backward()
        return loss

    opt.step(closure)
    return coef.detach().numpy() / sd


FLAT_SHARE = {"value": None}  # weight of each flat-frame pair relative to a copy's (None: 1 / frames)


def train(feats: dict, posts: pd.DataFrame, users: set[str], deg_weight: float, l2: float,
          user_of: dict[str, str]) -> np.ndarray:
    pairs = allpairs.within_user_pairs(posts, users, SOFT)
    rows = sorted(set(pairs["high_id"]) | set(pairs["low_id"]))
    local = {p: i for i, p in enumerate(rows)}
    X = [feats["F"][[feats["index"][p] for p in rows]]]
    hi, lo = list(pairs["high_id"].map(local)), list(pairs["low_id"].map(local))
    y, w = list(pairs["p"].to_numpy(np.float64)), [1.0] * len(pairs)
    if deg_weight > 0:
        extra, n0 = [], len(rows)

        def add(vec: np.ndarray) -> int:
            extra.append(vec)
            return n0 + len(extra) - 1

        mine = [(j, p) for j, p in enumerate(feats["chosen"]) if user_of.get(p) in users]
        for j, p in mine:
            if p not in local:
                local[p] = add(feats["F"][feats["index"][p]])
            for copies in feats["train_deg"].values():
                hi.append(local[p]), lo.append(add(copies[j])), y.append(1.0), w.append(deg_weight)
        for vec in feats["flat"].values():
            f = add(vec)
            for _, p in mine:
                share = FLAT_SHARE["value"] if FLAT_SHARE["value"] is not None else 1 / len(feats["flat"])
                hi.append(local[p]), lo.append(f), y.append(1.0), w.append(deg_weight * share)
        X.append(np.array(extra))
    return fit_probe(np.concatenate(X), np.array(hi), np.array(lo), np.array(y), np.array(w), l2)


def diffs(pairs: pd.DataFrame, coef: np.ndarray, vecs: np.ndarray, index: dict[str, int]) -> np.ndarray:
    s = vecs @ coef
    return np.array([s[index[h]] - s[index[lo]] for h, lo in zip(pairs["high_id"], pairs["low_id"])])


def cross_validate(feats: dict, posts: pd.DataFrame, pdips: pd.DataFrame, seed: int, deg_weight: float,
                   l2: float) -> dict:
    user_of = dict(zip(posts["post_id"].astype(str), posts["user_id"].astype(str)))
    accounts = sorted(set(user_of.values()))
    np.random.default_rng(seed).shuffle(accounts)
    fold_of = {u: k % 5 for k, u in enumerate(accounts)}
    d = {v: [] for v in (1, 5, 10)}
    temps, users, beats = [], [], {k: [] for k in (*TARGET_DEGRADATIONS, "black")}
    for k in range(5):
        train_users = {u for u, f in fold_of.items() if f != k}
        order = sorted(train_users)
        np.random.default_rng(seed * 100 + k).shuffle(order)
        inner = set(order[: len(order) // 5])
        coef0 = train(feats, posts, train_users - inner, deg_weight, l2, user_of)
        T = fit_temperature(diffs(allpairs.within_user_pairs(posts, inner, SELECT), coef0, feats["F"], feats["index"]))
        coef = train(feats, posts, train_users, deg_weight, l2, user_of)
        held = pdips[pdips["user_id"].astype(str).map(fold_of) == k]
        for v in d:
            d[v].append(diffs(held, coef, feats["views"][v], feats["vindex"]))
        temps += [T] * len(held)
        users += held["user_id"].astype(str).tolist()
        for j, p in enumerate(feats["chosen"]):
            if p in user_of and fold_of[user_of[p]] == k:
                orig = feats["F"][feats["index"][p]] @ coef
                for kind in TARGET_DEGRADATIONS:
                    beats[kind].append(orig > feats["deg"][kind][j] @ coef)
                beats["black"].append(orig > feats["flat"]["black"] @ coef)
    return {"d": {v: np.concatenate(x) for v, x in d.items()}, "T": np.array(temps), "users": np.array(users),
            "beats": {k: float(np.mean(v)) for k, v in beats.items()}, "n_beats": len(beats["black"])}


# -- statistics ----------------------------------------------------------------------------
def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact binomial test on discordant pairs (b one way, c the other)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap(d: np.ndarray, users: np.ndarray, key: str, temps: np.ndarray | None, reps: int = 300) -> list[float]:
    """95 % interval of a calibration metric, resampling accounts (pairs of one account move together)."""
    rng = np.random.default_rng(0)
    groups = {u: np.flatnonzero(users == u) for u in np.unique(users)}
    names = list(groups)
    vals = []
    for _ in range(reps):
        idx = np.concatenate([groups[names[i]] for i in rng.integers(0, len(names), len(names))])
        scaled = d[idx] * (temps[idx] if temps is not None else 1.0)
        vals.append(calibration_metrics(scaled)[key])
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def report(seed: int, deg_weight: float, cv: dict) -> dict:
    out = {"seed": seed, "deg_weight": deg_weight, "T_mean": float(cv["T"].mean()), "beats": cv["beats"],
           "photos_degraded": cv["n_beats"]}
    for v, d in cv["d"].items():
        raw, cal = calibration_metrics(d), calibration_metrics(d * cv["T"])
        out[f"views{v}"] = {"accuracy": raw["accuracy"], "n": raw["n"],
                            **{f"{m}_raw": raw[m] for m in ("mean_confidence", "ece", "log_loss", "brier")},
                            **{f"{m}_cal": cal[m] for m in ("mean_confidence", "ece", "log_loss", "brier")},
                            "ece_cal_ci95": bootstrap(d, cv["users"], "ece", cv["T"]),
                            "ece_raw_ci95": bootstrap(d, cv["users"], "ece", None),
                            "log_loss_cal_ci95": bootstrap(d, cv["users"], "log_loss", cv["T"])}
    for a, b in ((5, 1), (10, 1), (10, 5)):
        da, db = cv["d"][a], cv["d"][b]
        gain, loss = int(((da > 0) & (db < 0)).sum()), int(((da < 0) & (db > 0)).sum())
        out[f"{a}v{b}"] = {"right_only_with_more": gain, "right_only_with_fewer": loss, "p": mcnemar_p(gain, loss)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--deg-weights", default="0,0.3")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--flat-share", type=float, help="weight of each flat-frame pair relative to a degraded copy's "
                                                     "(default: 1 / number of frames)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    FLAT_SHARE["value"] = args.flat_share
    data = Path(args.data)
    posts = allpairs.read_posts(data / "posts.csv")
    posts = posts[posts["post_id"].astype(str).map(lambda p: (data / "images" / f"{p}.jpg").is_file())]
    pdips = pd.read_parquet(args.pairs)
    feats = load_features(data, Path(args.cache), posts, pdips)
    rows = []
    for w in (float(x) for x in args.deg_weights.split(",")):
        for seed in (int(x) for x in args.seeds.split(",")):
            rows.append(report(seed, w, cross_validate(feats, posts, pdips, seed, w, args.l2)))
            print(json.dumps(rows[-1]), flush=True)
    print("| quality-pair weight | seed | views | accuracy | conf raw / cal | ECE raw / cal [95% CI] | log-loss raw / cal "
          "| blur / thumb / jpeg10 / black beaten |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        for v in (1, 5, 10):
            m = r[f"views{v}"]
            beats = " / ".join(f"{r['beats'][k]:.3f}" for k in (*TARGET_DEGRADATIONS, "black"))
            print(f"| {r['deg_weight']:g} | {r['seed']} | {v} | {m['accuracy']:.3f} | {m['mean_confidence_raw']:.3f} / "
                  f"{m['mean_confidence_cal']:.3f} | {m['ece_raw']:.3f} / {m['ece_cal']:.3f} "
                  f"[{m['ece_cal_ci95'][0]:.3f}, {m['ece_cal_ci95'][1]:.3f}] | {m['log_loss_raw']:.3f} / "
                  f"{m['log_loss_cal']:.3f} | {beats} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
