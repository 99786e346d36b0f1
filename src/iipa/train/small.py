"""The small-data recipe, the default of ``iipa train`` (``--recipe default``).

Chosen by measurement on real Instagram photos of unseen users (``benchmarks/real_photos.py``),
for pair sets of hundreds to tens of thousands:

1. training pairs: every discriminable within-user pair of the training users, with soft
   labels P (``--posts``; see ``allpairs.py``), not only the matched PDIPs;
2. the backbone stays frozen; its features (the score head's input) are computed once per
   image, per horizontal flip and averaged over ``views`` test-time crops, in fp32, and
   cached in the run folder in fixed chunks (``features.py``), so a killed run resumes;
3. the score head is fitted as a linear probe on those features (``probe.py``), L2 chosen
   (and the temperature fitted) on the selection accounts; the card's headline comes from
   other held-out accounts, which chose nothing (``heldout.py``). With no validation users,
   a K-fold cross-fit by account gives the held-out predictions.

Fine-tuning the top stages after the probe was removed: on instagram-dev it added +0.003 on
one user split (noise) at many times the cost, and no test exercised it.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from iipa.backbones.popularity_net import PopularityNet
from iipa.backends.device import resolve_device, resolve_precision
from iipa.errors import IIPAError
from iipa.evaluate import pairwise_accuracy
from iipa.levels import reference_distribution
from iipa.model.cardschema import HEADLINE, MIN_REFERENCE_IMAGES
from iipa.pairs.table import attach_images, read_pairs
from iipa.train import allpairs
from iipa.train import state as st
from iipa.train.base import RecipeTrainer
from iipa.train.config import TrainConfig
from iipa.train.features import FeatureCache, cache_key
from iipa.train.heldout import build_rules, split_held_out
from iipa.train.probe import choose_l2, fit_pairwise_logistic

# L2 strengths the probe chooses from on the validation users' pairs (the middle one without
# validation users). 5-fold CV by account on instagram-dev found 0.3-1 best for EfficientNet-
# Lite0 features and anything up to 100 within noise (benchmarks/real_photos_cv.py).
PROBE_L2_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
CV_FOLDS = 5  # folds by account when there are no validation users
MIN_HELD_OUT_PAIRS = 50  # fewer validation pairs: the temperature is fitted on the K-fold cross-fit


class PairSet:
    """Pairs as integer indices into one image list, grouped by user."""

    def __init__(self, df: pd.DataFrame, index: dict[str, int], soft: bool = True) -> None:
        self.df = df.reset_index(drop=True)
        self.high = df["high_id"].map(index).to_numpy(np.int64)
        self.low = df["low_id"].map(index).to_numpy(np.int64)
        p = df["p"].to_numpy(np.float64) if soft and "p" in df else np.ones(len(df))
        self.target = np.where(np.isnan(p), 1.0, p)
        self.user = df["user_id"].astype(str).to_numpy()

    def __len__(self) -> int:
        return len(self.high)


class QualityPairs:
    """Synthetic pairs: image indices, the account of the original, per-pair weight."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int, float]] = []

    def add(self, user: str, high: int, low: int, weight: float) -> None:
        self.rows.append((user, high, low, weight))

    def done(self) -> QualityPairs:
        users, high, low, weight = zip(*self.rows) if self.rows else ((), (), (), ())
        self.user, self.high = np.array(users, dtype=object).astype(str), np.array(high, np.int64)
        self.low, self.weight = np.array(low, np.int64), np.array(weight, np.float64)
        return self

    def __bool__(self) -> bool:
        return bool(self.rows)


class SmallDataTrainer(RecipeTrainer):
    """One run of the small-data recipe in ``config.out``."""

    recipe = "default"

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = st.MetricsLog(self.run_dir / st.METRICS)
        self.device = resolve_device(config.device)
        self.amp_dtype = resolve_precision(config.precision, self.device)
        torch.manual_seed(config.seed)
        self.model = PopularityNet(config.backbone, pretrained=config.pretrained == "imagenet", profile=config.profile)
        if config.decode:  # recorded in the checkpoint; scoring decodes the same way
            self.model.profile = dataclasses.replace(self.model.profile, decode=config.decode)
        # the saved config states the decoding the profile uses, so config, profile and card agree
        self.config = config = config.replace(decode=self.model.profile.decode)
        self.model.eval().to(self.device)
        flips = (False, True) if config.hflip else (False,)
        key = cache_key(self.model, pretrained=config.pretrained, views=config.views, flips=flips,
                        precision=config.precision)
        self.cache = FeatureCache(self.run_dir / "features", self.model, key, device=self.device,
                                  amp_dtype=self.amp_dtype, progress=config.progress)
        self.summary: dict[str, Any] = {}
        self.cv_estimate: dict[str, Any] | None = None  # the K-fold estimate when no accounts are left to report on
        self.within_rule = ""

    # -- data -----------------------------------------------------------------------------
    def _load(self) -> None:
        c = self.config
        table = read_pairs(c.pairs)
        held_out = allpairs.held_out_users(table)
        select_users, report_users, self.report_from = split_held_out(table, c.seed)
        pdips = {"val": table[table["user_id"].astype(str).isin(select_users)],
                 "report": table[table["user_id"].astype(str).isin(report_users)]}
        pdips = {k: v[v["split"].isin(["val", "test"])] for k, v in pdips.items()}
        name = Path(c.pairs).name  # the card names files, never this machine's paths
        report_all = pdips["report"].iloc[:0]
        if c.posts:
            posts = allpairs.read_posts(c.posts)
            rules = allpairs.WithinUserRules.from_rules(build_rules(c.pairs), max_gap_days=c.max_gap_days)
            train_users = set(posts["user_id"].astype(str)) - held_out
            # Training: every pair down to min_pair_p (soft labels say how sure each is);
            # model selection: the discriminable pairs (P >= T) of the selection accounts;
            # the report: the same kind of pairs of accounts that chose nothing.
            train_df = allpairs.within_user_pairs(posts, train_users, dataclasses.replace(rules, threshold=c.min_pair_p))
            select_df = allpairs.within_user_pairs(posts, select_users, rules)
            report_all = allpairs.within_user_pairs(posts, report_users, rules)
            source = (f"every within-user pair with P >= {c.min_pair_p:g} and at most {c.max_gap_days} days apart "
                      f"of the {len(train_users)} accounts of {Path(c.posts).name} outside validation and test")
            self.origin = f"{Path(c.posts).name}: the posts of {posts['user_id'].nunique()} accounts"
            self.within_rule = f"P >= {rules.threshold:g}"
        else:
            train_df, select_df = table[table["split"] == "train"], pdips["val"]
            source = f"the training pairs of {name}"
            self.origin = f"{name}: the pairs of {table['user_id'].nunique()} accounts"
        if c.max_train_pairs is not None and len(train_df) > c.max_train_pairs:
            train_df = train_df.sample(n=c.max_train_pairs, random_state=c.seed)
        if c.max_val_pairs is not None:  # the same subset in every evaluation
            select_df = select_df.sample(n=min(len(select_df), c.max_val_pairs), random_state=c.seed)
            pdips["val"] = pdips["val"].sample(n=min(len(pdips["val"]), c.max_val_pairs), random_state=c.seed)
        frames = {"train": train_df, "select": select_df, "val": pdips["val"], "report": pdips["report"],
                  "report_all": report_all}
        ids = sorted(set().union(*(set(f["high_id"]) | set(f["low_id"]) for f in frames.values())))
        found, _ = attach_images(pd.DataFrame({"high_id": ids, "low_id": ids}), c.images)
        self.paths = found["high_path"].tolist()
        index = {pid: i for i, pid in enumerate(found["high_id"])}
        missing = {}
        for key, f in frames.items():
            ok = f["high_id"].isin(index) & f["low_id"].isin(index)
            missing[key] = int((~ok).sum())
            frames[key] = f[ok]
        if len(frames["train"]) == 0:
            raise IIPAError(f"{c.pairs}: no training pairs with images in {c.images}")
        self.train = PairSet(frames["train"], index, soft=c.soft_labels)
        self.select = PairSet(frames["select"], index)
        self.val = PairSet(frames["val"], index)
        self.report = PairSet(frames["report"], index)
        self.report_all = PairSet(frames["report_all"], index)
        self.quality = self._quality_pairs()
        self.data_info = {"train_pairs": len(self.train), "train_users": int(len(set(self.train.user))),
                          "train_images": int(len(np.unique(np.concatenate([self.train.high, self.train.low])))),
                          "train_source": source, "select_pairs": len(self.select), "val_pairs": len(self.val),
                          "val_users": int(len(set(self.val.user) | set(self.select.user))),
                          "test_pairs": len(self.report), "test_users": int(len(set(self.report.user)
                                                                               | set(self.report_all.user))),
                          "quality_pairs": len(self.quality.high) if self.quality else 0,
                          "dropped_missing_images": missing}
        self.log.write(event="data", **self.data_info)
        self.say(f"{len(self.train)} training pairs of {self.data_info['train_users']} training users "
                 f"({source}), {self.data_info['train_images']} images; selection: {len(self.val)} PDIPs and "
                 f"{len(self.select)} within-user pairs of {self.data_info['val_users']} unseen users; report: "
                 f"{len(self.report)} PDIPs and {len(self.report_all)} within-user pairs of "
                 f"{self.data_info['test_users']} other unseen users ({self.report_from})")

    def _quality_pairs(self) -> QualityPairs | None:
        """Synthetic pairs that need no likes (``train/degrade.py``): ``quality_images`` photos
        per training account (seeded) beat their blurred, darkened, over-compressed and
        thumbnail copies, and every flat frame; weight ``quality_pairs`` per copy, shared among
        the flat frames. The copies are files in the run folder, so the feature cache treats them
        like photos (and a resumed run reuses them)."""
        c = self.config
        if not c.quality_pairs:
            return None
        from iipa.train.degrade import KINDS, write_degraded, write_flat_frames

        rng = np.random.default_rng(c.seed)
        chosen: dict[str, tuple[str, int]] = {}
        for user in sorted(set(self.train.user)):
            mine = self.train.user == user
            images = np.unique(np.concatenate([self.train.high[mine], self.train.low[mine]]))
            for i in rng.choice(images, size=min(c.quality_images, len(images)), replace=False):
                chosen[self.paths[int(i)]] = (user, int(i))
        folder = self.run_dir / "quality"
        triples = write_degraded(sorted(chosen), folder, per_image=len(KINDS), seed=c.seed)
        flats = write_flat_frames(folder)
        start = len(self.paths)
        new = [copy for _, copy, _ in triples] + list(flats.values())
        self.paths = self.paths + new
        at = {p: start + k for k, p in enumerate(new)}
        q = QualityPairs()
        for orig, copy, _ in triples:
            q.add(*chosen[orig], at[copy], c.quality_pairs)
        originals = sorted({chosen[orig] for orig, _, _ in triples})
        for frame in flats.values():
            for user, i in originals:
                q.add(user, i, at[frame], c.quality_pairs)
        self.say(f"quality pairs: {len(originals)} photos beat {len(triples)} degraded copies and {len(flats)} flat "
                 f"frames ({len(q.rows)} pairs, weight {c.quality_pairs:g})")
        return q.done()

    def _training_arrays(self, keep_users: np.ndarray | None = None) -> tuple[tuple, np.ndarray | None]:
        """(high, low, target) of the training pairs plus the quality pairs, and their weights
        (None without quality pairs); ``keep_users``: a mask over users to keep (cross-fit)."""
        t = self.train
        mask = np.ones(len(t), bool) if keep_users is None else keep_users(t.user)
        arrays = (t.high[mask], t.low[mask], t.target[mask])
        if not self.quality:
            return arrays, None
        q = self.quality
        qmask = np.ones(len(q.high), bool) if keep_users is None else keep_users(q.user)
        arrays = tuple(np.concatenate([a, b]) for a, b in zip(arrays, (q.high[qmask], q.low[qmask],
                                                                        np.ones(int(qmask.sum())))))
        return arrays, np.concatenate([np.ones(int(mask.sum())), q.weight[qmask]])

    # -- the run --------------------------------------------------------------------------
    def resume(self) -> bool:
        """The feature chunks already in the run folder are reused by :meth:`run`."""
        return any(self.cache.dir.glob("chunk-*.pt"))

    def run(self) -> dict[str, Any]:
        started = time.time()
        if self.resume():
            self.say(f"reusing the feature chunks in {self.cache.dir}")
        self._load()
        feats = self.cache.features(self.paths)  # n x flips x dim
        self.say(f"features of {len(self.paths)} images ({self.cache.computed_chunks} chunks computed, "
                 f"{time.time() - started:.0f} s)")
        train_feats = np.nanmean(feats, 1) if feats.shape[1] > 1 else feats[:, 0]
        full = train_feats.astype(np.float64)  # every flip averaged: the probe's training features
        scoring = feats[:, 0].astype(np.float64)  # unflipped: what scoring sees
        bad = np.isnan(full).any(1) | np.isnan(scoring).any(1)
        full[bad], scoring[bad] = 0.0, 0.0
        self._fit(full, scoring, bad)
        self._calibrate()
        return self._finish(time.time() - started)

    def _fit(self, feats: np.ndarray, scoring: np.ndarray, bad: np.ndarray) -> None:
        c = self.config
        sel = self.select if len(self.select) else self.val
        grid = (c.probe_l2,) if c.probe_l2 is not None else PROBE_L2_GRID
        train, weights = self._training_arrays()
        fit = choose_l2(feats, train, (sel.high, sel.low) if len(sel) else None, grid=grid, weights=weights)
        head = self.model.head
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(fit["w"], dtype=head.weight.dtype)[None])
            head.bias.zero_()
        # "selection accuracy": these pairs chose the L2 (a label, so nobody reads it as an estimate)
        self.probe = {"l2": fit["l2"], "selection_accuracy": fit["val_accuracy"]}
        self.scores = scoring @ fit["w"]
        self.scores[bad] = np.nan
        self.result_acc = {}
        for key, ps in (("select", self.select), ("val", self.val), ("test", self.report),
                        ("test_all", self.report_all)):
            if len(ps):
                r = pairwise_accuracy(self.scores[ps.high], self.scores[ps.low])
                self.result_acc[key] = {"accuracy": r["accuracy"], "ci95": r["ci95"], "n": r["n"],
                                        "accounts": int(len(set(ps.user)))}
        self.log.write(event="val", step=0, **{f"{k}_accuracy": v["accuracy"] for k, v in self.result_acc.items()})
        chose = ["the probe's L2"] if len(grid) > 1 and len(sel) else []
        if len(sel) >= MIN_HELD_OUT_PAIRS:
            self.held_out = (self.scores[sel.high] - self.scores[sel.low], np.ones(len(sel)))
            self.held_out_source = f"{len(sel)} pairs of the validation users"
            chose.append("the temperature" if getattr(c, "calibrate", None) else "")
        if len(sel) < MIN_HELD_OUT_PAIRS or not len(self.report):
            # the temperature's pairs when validation has too few; the estimate when no account is left to report on
            cross = self._cross_fit(feats, scoring, fit["l2"], estimate=not len(self.report))
            if len(sel) < MIN_HELD_OUT_PAIRS:
                self.held_out = cross
        self.estimate = self._estimate(sel, " and ".join(x for x in chose if x))
        self.say(f"linear probe: l2 {fit['l2']:g}; " + (", ".join(f"{k} {v['accuracy']:.4f}" for k, v in
                                                                   self.result_acc.items()) or "no validation users"))

    def _estimate(self, sel: PairSet, chose: str) -> dict[str, Any]:
        """The card's accuracy rows: first (the headline) pairs of accounts that chose nothing,
        then the figures of the accounts whose pairs chose ``chose``, labelled so."""
        def row(key: str, **text: str) -> dict[str, Any]:
            r = self.result_acc[key]
            return {"accuracy": r["accuracy"], "ci95": r["ci95"], "pairs": r["n"], "accounts": r["accounts"], **text}

        out: dict[str, Any] = {"metric": "pairwise accuracy (ties count half), 95 % Wilson interval"}
        if "test" in self.result_acc:
            out[HEADLINE] = row("test", what=f"matched PDIPs of accounts never trained on and that chose nothing "
                                             f"({self.report_from})")
        if "test_all" in self.result_acc:
            out[f"{HEADLINE}_within_user" if HEADLINE in out else HEADLINE] = row(
                "test_all", what=f"every within-user pair with {self.within_rule} of accounts never trained on "
                                 f"and that chose nothing ({self.report_from})")
        if HEADLINE not in out and self.cv_estimate is not None:
            out[HEADLINE] = self.cv_estimate
        optimistic = f"these pairs chose {chose}: optimistic" if chose else "chose nothing"
        if "select" in self.result_acc:
            out["selection_accounts"] = row("select", note=optimistic if sel is self.select else "")
        if "val" in self.result_acc and self.config.posts:  # without posts, these are the selection pairs
            out["selection_accounts_pdips"] = row("val", note=optimistic if sel is self.val else
                                                  f"accounts whose other pairs chose {chose}: optimistic" if chose
                                                  else "")
        if HEADLINE not in out:
            out["note"] = "no accounts that chose nothing: no estimate of accuracy on unseen accounts"
        return out

    def _cross_fit(self, feats: np.ndarray, scoring: np.ndarray, l2: float,
                   estimate: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """Held-out predictions by account (K folds) of the training users (the temperature's
        pairs when validation has too few); ``estimate``: also the card's estimate (L2 was fixed
        before, and a temperature leaves accuracy as is)."""
        users = np.unique(self.train.user)
        if len(users) < 2:
            return None
        fold_of = {u: i % CV_FOLDS for i, u in enumerate(np.random.default_rng(self.config.seed).permutation(users))}
        folds = np.array([fold_of[u] for u in self.train.user])
        diffs, targets, accs = [], [], []
        for k in range(min(CV_FOLDS, len(users))):
            out = folds == k
            held = {u for u, f in fold_of.items() if f == k}
            tr, weights = self._training_arrays(lambda users, held=held: ~np.isin(users, list(held)))
            w, _ = fit_pairwise_logistic(feats, *tr, l2=l2, weights=weights)
            d = scoring[self.train.high[out]] @ w - scoring[self.train.low[out]] @ w
            diffs.append(d)
            targets.append(self.train.target[out])
            accs.append(float(((d > 0) + 0.5 * (d == 0)).mean()))
        d, t = np.concatenate(diffs), np.concatenate(targets)
        source = f"{len(accs)}-fold cross-fit by account: held-out training pairs of {len(users)} accounts"
        if self.held_out is None:
            self.held_out_source = source
        if estimate:
            r = pairwise_accuracy(d, np.zeros_like(d))
            self.cv_estimate = {"what": f"{len(accs)}-fold cross-validation by account of the same probe "
                                        "(training pairs, soft labels)", "accuracy": r["accuracy"],
                                "ci95": r["ci95"], "pairs": r["n"], "accounts": len(users), "per_fold": accs}
        return d, t

    def apply_temperature(self, temperature: float) -> None:
        head = self.model.head
        with torch.no_grad():
            head.weight.mul_(temperature)
            head.bias.mul_(temperature)
        self.scores = self.scores * temperature  # the reference is computed from these in _finish

    def _finish(self, seconds: float) -> dict[str, Any]:
        c = self.config
        if c.score_crops and hasattr(self.model.profile, "crops"):
            self.model.profile = dataclasses.replace(self.model.profile, crops=c.score_crops)
        self.model.reference = self._reference()
        metrics = {"probe": self.probe, "seconds": round(seconds, 1),
                   **{f"{k}_accuracy": v["accuracy"] for k, v in self.result_acc.items()},
                   **{f"{k}_ci95": v["ci95"] for k, v in self.result_acc.items()},
                   **{f"{k}_pairs": v["n"] for k, v in self.result_acc.items()}}
        data = {"source": self.origin, "pairs": self.data_info["train_source"],
                "training_pairs": self.data_info["train_pairs"],
                "training_users": self.data_info["train_users"], "training_images": self.data_info["train_images"]}
        # the per-set figures are in the card's accuracy rows, each labelled with what it chose
        self.model.info = {"config": c.to_dict(), "metrics": {k: metrics[k] for k in ("probe", "seconds")},
                           "data": self.data_info, "domain": c.domain,
                           **self.card_facts(data, self.estimate)}
        if self.calibration is not None:
            self.model.info["calibration"] = self.calibration
        self.save_model(self.run_dir / st.BEST)
        self.save_model(self.run_dir / st.LAST)
        self.summary = {"out": str(self.run_dir), "recipe": "default", "best": str(self.run_dir / st.BEST),
                        "best_val_accuracy": metrics.get("val_accuracy"), "seconds_this_run": round(seconds, 1),
                        **{k: v for k, v in metrics.items() if k != "seconds"}, "data": self.data_info,
                        "estimate": self.estimate, "calibration": self.calibration}
        st.write_json(self.run_dir / st.SUMMARY, self.summary)
        return self.summary

    def _reference(self) -> dict[str, Any] | None:
        """The reference distribution: the scores of the held-out accounts' images, or of every
        scored image (training ones too) when fewer than ``MIN_REFERENCE_IMAGES`` are held out."""
        held = np.unique(np.concatenate([a for ps in (self.select, self.val, self.report, self.report_all)
                                         for a in (ps.high, ps.low)]))
        held = held[~np.isnan(self.scores[held])]
        name = Path(self.config.pairs).name
        if len(held) >= MIN_REFERENCE_IMAGES:
            scores, whose = self.scores[held], f"the validation and test users of {name}"
        else:
            train = np.unique(np.concatenate([self.train.high, self.train.low]))
            both = np.union1d(held, train[~np.isnan(self.scores[train])])
            scores = self.scores[both]
            whose = (f"the validation and test users of {name} ({len(held)}) and the training users "
                     f"({len(both) - len(held)}): fewer than {MIN_REFERENCE_IMAGES} held-out images")
        return reference_distribution(scores.tolist(), source=f"model scores on {scores.size} images of {whose}")

    def save_model(self, path: Path) -> Path:
        from iipa.model.checkpoint import save_checkpoint

        return save_checkpoint(self.model, path)
