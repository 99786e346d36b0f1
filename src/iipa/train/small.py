"""The small-data recipe, the default of ``iipa train`` (``--recipe default``).

Chosen by measurement on real Instagram photos of unseen users (``benchmarks/real_photos.py``,
issue 11), for pair sets of hundreds to tens of thousands:

1. training pairs: every discriminable within-user pair of the training users, with soft
   labels P (``--posts``; see ``allpairs.py``), not only the matched PDIPs;
2. the backbone's first stages stay frozen; their outputs are computed once per image and
   per horizontal flip (the only augmentation: crops and colour jitter change the cues
   popularity depends on, and caching makes each epoch cheap on a CPU);
3. the score head is fitted as a linear probe on frozen features (``probe.py``). With the
   default backbone ``efficientnet_lite0_ms`` (final + middle-stage features) and
   ``tune_stages=0`` this is the whole recipe: on instagram-dev it was the best measured
   (5-fold CV by account), and it is how the shipped ``instagram-lite0`` was trained;
4. optionally (``tune_stages`` k >= 1, plain ``efficientnet_liteN``), the probe is the warm
   start of fine-tuning the last k stages with low, depth-decayed learning rates, an
   exponential moving average of the weights (EMA), judged on the validation users after
   every epoch, keeping the best and stopping after ``patience`` epochs without progress.

Batches are groups of users: each image is scored once per epoch and every training pair
between images of the batch contributes, so an epoch sees all pairs at the cost of one
pass over the images.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from iipa.errors import IIPAError, ImageError
from iipa.evaluate import pairwise_accuracy
from iipa.levels import reference_distribution
from iipa.models import PopularityNet
from iipa.pairs.table import attach_images, read_pairs
from iipa.runtime import resolve_device, resolve_precision
from iipa.train import allpairs, stages
from iipa.train import state as st
from iipa.train.config import TrainConfig
from iipa.train.probe import choose_l2

# L2 strengths the probe chooses from on the validation users' pairs (the middle one without
# validation users). 5-fold CV by account on instagram-dev found 0.3-1 best for EfficientNet-
# Lite0 features and anything up to 100 within noise (benchmarks/real_photos_cv.py).
PROBE_L2_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


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


class SmallDataTrainer:
    """One run of the small-data recipe in ``config.out``."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run_dir = Path(config.out)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = st.MetricsLog(self.run_dir / st.METRICS)
        self.device = resolve_device(config.device)
        self.amp_dtype = resolve_precision(config.precision, self.device)
        torch.manual_seed(config.seed)
        self.model = PopularityNet(config.backbone, pretrained=config.pretrained == "imagenet", profile=config.profile)
        if config.decode:  # recorded in the checkpoint; scoring decodes the same way
            self.model.profile = dataclasses.replace(self.model.profile, decode=config.decode)
        # The saved config states the decoding the profile uses, so config, profile and card agree.
        self.config = config = config.replace(decode=self.model.profile.decode)
        self.model.eval()  # BN statistics stay frozen: batches are small and grouped by user
        self.tune = min(config.tune_stages, stages.max_tune_stages(self.model))
        if self.tune < config.tune_stages and config.epochs > 0:
            raise IIPAError(f"{config.backbone}: --tune-stages goes up to {self.tune} (its score head only: a linear "
                            f"probe), not {config.tune_stages}; fine-tuning needs a plain efficientnet_liteN backbone")
        self.trunk, self.top, self.modules = stages.split(self.model, self.tune)

    # -- data -----------------------------------------------------------------------------
    def _load(self) -> None:
        c = self.config
        table = read_pairs(c.pairs)
        held_out = allpairs.held_out_users(table)
        val_pdips = table[table["split"] == "val"]
        if c.posts:
            posts = allpairs.read_posts(c.posts)
            rules = allpairs.WithinUserRules.from_rules(_build_rules(c.pairs), max_gap_days=c.max_gap_days)
            train_users = set(posts["user_id"].astype(str)) - held_out
            # Training: every pair down to min_pair_p (soft labels say how sure each is);
            # model selection: the discriminable pairs (P >= T) of the validation users.
            train_rules = dataclasses.replace(rules, threshold=c.min_pair_p)
            train_df = allpairs.within_user_pairs(posts, train_users, train_rules)
            val_users = set(val_pdips["user_id"].astype(str))
            select_df = allpairs.within_user_pairs(posts, val_users, rules)
            source = (f"every within-user pair with P >= {c.min_pair_p:g} and at most {c.max_gap_days} days apart "
                      f"of {len(train_users)} training users of {c.posts}")
        else:
            train_df, select_df = table[table["split"] == "train"], val_pdips
            source = f"the training pairs of {c.pairs}"
        if c.max_train_pairs is not None and len(train_df) > c.max_train_pairs:
            train_df = train_df.sample(n=c.max_train_pairs, random_state=c.seed)
        if c.max_val_pairs is not None:  # the same subset in every evaluation
            select_df = select_df.sample(n=min(len(select_df), c.max_val_pairs), random_state=c.seed)
            val_pdips = val_pdips.sample(n=min(len(val_pdips), c.max_val_pairs), random_state=c.seed)
        frames = {"train": train_df, "select": select_df, "val": val_pdips}
        ids = sorted(set().union(*(set(f["high_id"]) | set(f["low_id"]) for f in frames.values())))
        found, _ = attach_images(pd.DataFrame({"high_id": ids, "low_id": ids}), c.images)
        self.paths = found["high_path"].tolist()
        index = {pid: i for i, pid in enumerate(found["high_id"])}
        missing = {}
        for name, f in frames.items():
            ok = f["high_id"].isin(index) & f["low_id"].isin(index)
            missing[name] = int((~ok).sum())
            frames[name] = f[ok]
        if len(frames["train"]) == 0:
            raise IIPAError(f"{c.pairs}: no training pairs with images in {c.images}")
        self.train = PairSet(frames["train"], index, soft=c.soft_labels)
        self.select = PairSet(frames["select"], index)
        self.val = PairSet(frames["val"], index)
        self.train_images = np.unique(np.concatenate([self.train.high, self.train.low]))
        self.data_info = {"train_pairs": len(self.train), "train_users": int(len(set(self.train.user))),
                          "train_images": int(len(self.train_images)), "train_source": source,
                          "select_pairs": len(self.select), "val_pairs": len(self.val),
                          "val_users": int(len(set(self.val.user))), "dropped_missing_images": missing}
        self.log.write(event="data", **self.data_info)
        if not len(self.select) and not len(self.val) and self.tune > 0 and c.epochs > 0:
            raise IIPAError(f"{c.pairs}: no validation users, so fine-tuning cannot stop early; give the pairs "
                            "validation users (iipa pairs build --val ... --split-by-user) or train the probe only "
                            "(--tune-stages 0 or --epochs 0)")
        self._say(f"{len(self.train)} training pairs ({source}), {len(self.train_images)} images; "
                  f"validation: {len(self.val)} PDIPs and {len(self.select)} within-user pairs "
                  f"of {self.data_info['val_users']} unseen users")

    # -- frozen trunk cache -----------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    @torch.no_grad()
    def _cache(self, images: np.ndarray, flips: tuple[bool, ...]) -> dict[bool, torch.Tensor]:
        """Trunk outputs of ``images`` (fp16, CPU), one tensor per flip; unreadable images give NaN."""
        profile, out = self.model.profile, {f: [] for f in flips}
        bs, started = max(8, self.config.batch_size), time.time()
        for k in range(0, len(images), bs):
            batch = []
            for i in images[k:k + bs]:
                try:
                    batch.append(profile.prepare(self.paths[i]))  # the profile's one function (decode included)
                except ImageError:
                    batch.append(None)
            shape = next((t.shape for t in batch if t is not None), None)
            x = torch.stack([t if t is not None else torch.zeros(shape, dtype=torch.uint8) for t in batch])
            x = profile.normalize(x).to(self.device).contiguous(memory_format=torch.channels_last)
            bad = torch.tensor([t is None for t in batch])
            for f in flips:
                with self._autocast():
                    h = self.trunk(x.flip(-1) if f else x).float()
                h[bad.to(h.device)] = float("nan")
                out[f].append(h.to("cpu", torch.float16))
            if self.config.progress and k % (bs * 10) == 0:
                self._say(f"cached {k + len(batch)}/{len(images)} images ({time.time() - started:.0f} s)")
        return {f: torch.cat(v) for f, v in out.items()}

    def _scores(self, cache: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        x = cache.to(self.device).float()
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.set_grad_enabled(grad), self._autocast():
            return self.top(x).float()

    def _score_images(self, cache: torch.Tensor) -> np.ndarray:
        bs = 256
        return torch.cat([self._scores(cache[k:k + bs]) for k in range(0, len(cache), bs)]).cpu().numpy()

    # -- evaluation -----------------------------------------------------------------------
    def _evaluate(self) -> dict[str, Any]:
        scores = np.full(len(self.paths), np.nan)
        if len(self.eval_images):
            scores[self.eval_images] = self._score_images(self.eval_cache)
        out = {}
        for name, ps in (("select", self.select), ("val", self.val)):
            if len(ps):
                r = pairwise_accuracy(scores[ps.high], scores[ps.low])
                out[name] = {"accuracy": r["accuracy"], "ci95": r["ci95"], "n": r["n"]}
        self.last_scores = scores
        return out

    def _criterion(self, result: dict[str, Any]) -> float:
        key = "select" if "select" in result else "val"
        return result[key]["accuracy"] if key in result else -1.0

    # -- stage 1: linear probe -------------------------------------------------------------
    @torch.no_grad()
    def _warm_start(self) -> None:
        feats_of = stages.pre_logits_of_top(self.model, self.tune)
        n_images = len(self.paths)
        feats = None
        for cache in self.train_cache.values():
            with self._autocast():
                f = torch.cat([feats_of(cache[k:k + 256].float()).float() for k in range(0, len(cache), 256)])
            feats = f if feats is None else feats + f
        feats = (feats / len(self.train_cache)).numpy().astype(np.float64)
        full = np.zeros((n_images, feats.shape[1]))
        full[self.train_images] = feats
        if len(self.eval_images):
            with self._autocast():
                ev = torch.cat([feats_of(self.eval_cache[k:k + 256].float()).float()
                                for k in range(0, len(self.eval_cache), 256)]).numpy()
            full[self.eval_images] = ev
        ok = ~np.isnan(full).any(1)
        full[~ok] = 0.0
        sel = self.select if len(self.select) else self.val
        grid = (self.config.probe_l2,) if self.config.probe_l2 is not None else PROBE_L2_GRID
        fit = choose_l2(full, (self.train.high, self.train.low, self.train.target),
                        (sel.high, sel.low) if len(sel) else None, grid=grid)
        head = self.model.head
        head.weight.copy_(torch.as_tensor(fit["w"], dtype=head.weight.dtype)[None])
        head.bias.zero_()
        self.probe = {"l2": fit["l2"], "select_accuracy": fit["val_accuracy"]}
        self._say(f"linear probe warm start: l2 {fit['l2']:g}, selection accuracy {fit['val_accuracy']}")

    # -- stage 2: fine-tuning the top -----------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = [{"params": list(self.modules[0].parameters()), "lr": c.head_lr, "name": "head"}]
        for depth, module in enumerate(self.modules[1:]):
            groups.append({"params": list(module.parameters()), "lr": c.backbone_lr * c.layer_decay ** depth,
                           "name": f"top-{depth}"})
        return torch.optim.AdamW(groups, weight_decay=c.weight_decay)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """Groups of whole users of about ``batch_size`` images each, in a seeded order."""
        users = sorted(self.user_pairs)
        random.Random(hash((self.config.seed, epoch))).shuffle(users)
        batches, current, n = [], [], 0
        for u in users:
            current.append(u)
            n += self.user_images[u]
            if n >= self.config.batch_size:
                batches.append(np.concatenate([self.user_pairs[v] for v in current]))
                current, n = [], 0
        if current:
            batches.append(np.concatenate([self.user_pairs[v] for v in current]))
        return batches

    def _step(self, pair_ids: np.ndarray, flips: np.ndarray) -> float:
        hi, lo = self.train.high[pair_ids], self.train.low[pair_ids]
        imgs = np.unique(np.concatenate([hi, lo]))
        pos = self.cache_pos[imgs]
        x = torch.stack([self.train_cache[bool(flips[i])][p] for i, p in zip(imgs, pos, strict=True)])
        s = self._scores(x, grad=True)
        local = {int(i): k for k, i in enumerate(imgs)}
        a = torch.as_tensor([local[int(i)] for i in hi])
        b = torch.as_tensor([local[int(i)] for i in lo])
        y = torch.as_tensor(self.train.target[pair_ids], dtype=torch.float32)
        logits = s[a] - s[b]
        ok = ~torch.isnan(logits)
        loss = nn.functional.binary_cross_entropy_with_logits(logits[ok], y[ok])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        loss = loss.detach()
        self.ema.update_parameters(self.params)
        return loss.item()

    def _fine_tune(self) -> None:
        c = self.config
        self.params = nn.ModuleList(self.modules)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.params.parameters():
            p.requires_grad_(True)
        self.optimizer = self._optimizer()
        self.user_pairs = {u: np.flatnonzero(self.train.user == u) for u in np.unique(self.train.user)}
        self.user_images = {u: len(np.unique(np.concatenate([self.train.high[ix], self.train.low[ix]])))
                            for u, ix in self.user_pairs.items()}
        steps = max(1, len(self._batches(0)))
        decay = 0.5 ** (1.0 / max(1.0, c.ema_halflife_epochs * steps))  # EMA half-life in epochs
        self.ema = torch.optim.swa_utils.AveragedModel(
            self.params, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay))
        rng = np.random.default_rng(c.seed)
        stale = 0
        for epoch in range(c.epochs):
            started, losses = time.time(), []
            for pair_ids in self._batches(epoch):
                flips = rng.random(len(self.paths)) < 0.5 if len(self.train_cache) > 1 else np.zeros(len(self.paths))
                losses.append(self._step(pair_ids, flips))
            live = copy.deepcopy(self.params.state_dict())
            self.params.load_state_dict(self.ema.module.state_dict())
            result = self._evaluate()
            improved = self._criterion(result) > self.best_criterion
            self.log.write(event="val", epoch=epoch + 1, loss=float(np.mean(losses)), seconds=round(time.time() - started, 1),
                           **{f"{k}_accuracy": v["accuracy"] for k, v in result.items()})
            self._say(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, " + ", ".join(
                f"{k} {v['accuracy']:.4f}" for k, v in result.items()) + f" ({time.time() - started:.0f} s)")
            if improved:
                self._keep_best(result, epoch + 1)
                stale = 0
            else:
                stale += 1
            self.params.load_state_dict(live)
            if stale >= c.patience:
                break
        self.params.load_state_dict(self.best_state)

    def _keep_best(self, result: dict[str, Any], epoch: int) -> None:
        self.best_criterion = self._criterion(result)
        self.best_result = {"epoch": epoch, **result}
        self.best_state = copy.deepcopy(nn.ModuleList(self.modules).state_dict())
        self.best_scores = self.last_scores.copy()

    # -- the run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.time()
        c = self.config
        self._load()
        flips = (False, True) if c.hflip else (False,)
        eval_images = np.unique(np.concatenate([self.select.high, self.select.low, self.val.high, self.val.low]))
        self.eval_images = eval_images
        self.train_cache = self._cache(self.train_images, flips)
        self.eval_cache = self._cache(eval_images, (False,))[False] if len(eval_images) else None
        self.cache_pos = np.full(len(self.paths), -1)
        self.cache_pos[self.train_images] = np.arange(len(self.train_images))
        self._say(f"cached frozen trunk outputs ({time.time() - started:.0f} s)")
        self._warm_start()
        result = self._evaluate()
        self.best_criterion = -math.inf
        self._keep_best(result, 0)
        self.log.write(event="val", epoch=0, **{f"{k}_accuracy": v["accuracy"] for k, v in result.items()})
        self._say("after warm start: " + (", ".join(f"{k} {v['accuracy']:.4f}" for k, v in result.items())
                                          or "no validation users to judge it on"))
        if self.tune > 0 and c.epochs > 0:
            self._fine_tune()
        return self._finish(time.time() - started)

    def _finish(self, seconds: float) -> dict[str, Any]:
        c = self.config
        if len(self.eval_images):
            scores, whose = self.best_scores[self.eval_images], f"the validation users of {c.pairs}"
        else:  # no validation users (a model trained on every account): its training images
            scores, whose = self._score_images(self.train_cache[False]), "the training users (no validation users)"
        scores = scores[~np.isnan(scores)]
        self.model.reference = reference_distribution(
            scores.tolist(), source=f"model scores on {scores.size} images of {whose}")
        metrics = {"best_epoch": self.best_result["epoch"], "probe": self.probe, "seconds": round(seconds, 1),
                   **{f"{k}_accuracy": v["accuracy"] for k, v in self.best_result.items() if k != "epoch"},
                   **{f"{k}_ci95": v["ci95"] for k, v in self.best_result.items() if k != "epoch"},
                   **{f"{k}_pairs": v["n"] for k, v in self.best_result.items() if k != "epoch"}}
        self.model.info = {"config": c.to_dict(), "metrics": metrics, "data": self.data_info, "domain": c.domain}
        from iipa.checkpoint import save_checkpoint

        for name in (st.BEST, st.LAST):
            save_checkpoint(self.model, self.run_dir / name)
        summary = {"out": str(self.run_dir), "recipe": "default", "best": str(self.run_dir / st.BEST),
                   "best_val_accuracy": metrics.get("val_accuracy"), "seconds_this_run": round(seconds, 1),
                   **{k: v for k, v in metrics.items() if k not in ("seconds",)}, "data": self.data_info}
        st.write_json(self.run_dir / st.SUMMARY, summary)
        return summary

    def _say(self, text: str) -> None:
        print(f"iipa train: {text}", file=sys.stderr, flush=True)


def _build_rules(pairs: str) -> dict[str, Any]:
    """The rules the pairs table was built with (its stats.json), else the paper's."""
    import json

    stats = Path(pairs).parent / "stats.json"
    if stats.is_file():
        try:
            return dict(json.loads(stats.read_text(encoding="utf-8")).get("rules") or {})
        except (ValueError, OSError):
            pass
    return {}
