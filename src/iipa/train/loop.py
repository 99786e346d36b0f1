"""The Siamese learning-to-rank loop (paper §3.2, eq. 7-9), resumable and DDP-ready.

Both images of a pair go through the same network in one batch of 2N (shared weights by
construction); O_AB = f(A) - f(B) is a logit, P_AB = sigmoid(O_AB), and the loss is the
binary cross-entropy between P_AB and the label (1 when A is the more popular image, or
the pair's P with soft labels). ``BCEWithLogits`` on O_AB is the same loss computed
without overflow.

Under ``torchrun`` every rank trains on its own shard (DistributedSampler) with a batch of
``batch_size / world_size`` pairs; gradients are averaged by DDP, so the effective batch
is ``batch_size`` as in the paper. Rank 0 validates and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from iipa.backbones.popularity_net import PopularityNet
from iipa.backends.device import cpu_count, resolve_device, resolve_precision
from iipa.errors import IIPAError
from iipa.evaluate import pairwise_accuracy, score_paths
from iipa.levels import reference_distribution
from iipa.scoring import make_scorer
from iipa.train import state as st
from iipa.train.base import RecipeTrainer
from iipa.train.config import TrainConfig, resume_conflicts
from iipa.train.data import PairDataset, epoch_indices, flip_labels, load_pairs, pair_loader
from iipa.train.distributed import Dist


def default_workers() -> int:
    """Processes for training data loaders on a GPU: half the CPUs, 1-4."""
    return max(1, min(4, cpu_count() // 2))


def build_model(config: TrainConfig) -> PopularityNet:
    model = PopularityNet(config.backbone, pretrained=config.pretrained == "imagenet", profile=config.profile)
    if config.decode:  # the checkpoint records the decoding it was trained with; scoring follows it
        model.profile = dataclasses.replace(model.profile, decode=config.decode)
    model.info = {"config": config.to_dict(), "domain": config.domain}
    return model


def build_optimizer(model: PopularityNet, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the paper's two learning rates: pretrained layers vs the new last layer."""
    groups = [
        {"params": list(model.backbone_parameters()), "lr": config.backbone_lr, "name": "backbone"},
        {"params": list(model.head_parameters()), "lr": config.head_lr, "name": "head"},
    ]
    return torch.optim.Adam(groups, weight_decay=config.weight_decay)


def pair_logits(model: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """O_AB = f(A) - f(B), one forward pass over the 2N images."""
    scores = model(torch.cat([a, b]))
    n = a.shape[0]
    return scores[:n] - scores[n:]


class Trainer(RecipeTrainer):
    """One run of the paper recipe in ``config.out``; ``run()`` starts it or resumes it."""

    recipe = "paper"

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.dist = Dist.from_env()
        self.device = self.dist.device(resolve_device(config.device))
        self.amp_dtype = resolve_precision(config.precision, self.device)
        self.main = self.dist.rank == 0
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        self.log = st.MetricsLog(self.run_dir / st.METRICS, enabled=self.main)
        torch.manual_seed(config.seed)
        self.model = build_model(config).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.lr_decay)
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_acc: float | None = None
        self.done = False
        self._load_data()

    # -- data ---------------------------------------------------------------------------
    def _load_data(self) -> None:
        c = self.config
        train_df, missing = load_pairs(c.pairs, c.images, "train")
        if c.max_train_pairs is not None:
            train_df = train_df.sample(n=min(len(train_df), c.max_train_pairs), random_state=c.seed).reset_index(drop=True)
        if len(train_df) == 0:
            raise IIPAError(f"{c.pairs}: no training pairs with images in {c.images} ({missing} lacked an image)")
        val_df, val_missing = load_pairs(c.pairs, c.images, "val")
        if c.max_val_pairs is not None and len(val_df) > c.max_val_pairs:
            val_df = val_df.sample(n=c.max_val_pairs, random_state=c.seed).reset_index(drop=True)
        self.val_df = val_df
        flipped = flip_labels(len(train_df), c.label_noise, c.seed)
        self.train_set = PairDataset(train_df, self.model.profile, train=True, swap=c.swap, soft=c.soft_labels,
                                     flipped=flipped, seed=c.seed)
        self.missing = {"train": missing, "val": val_missing}
        self.workers = default_train_workers(self.device) if c.workers is None else c.workers
        self.per_rank_batch = max(1, c.batch_size // self.dist.world)
        if self.main:
            print(f"iipa train: {len(train_df)} training pairs, {len(val_df)} validation pairs "
                  f"({missing} + {val_missing} dropped: image missing in {c.images})", file=sys.stderr)
            self.log.write(event="data", train_pairs=len(train_df), val_pairs=len(val_df),
                           dropped_missing_images=self.missing, flipped_labels=int(flipped.sum()))

    # -- state --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "best_acc": self.best_acc, "done": self.done,
                "model": {k: v.detach().cpu() for k, v in self.model.net.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": st.rng_state()}

    def resume(self) -> bool:
        saved = st.load_state(self.run_dir)
        if saved is None:
            return False
        if self.main:  # temp files of a write that a kill interrupted
            for tmp in self.run_dir.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        conflicts = resume_conflicts(saved["config"], self.config)
        if conflicts:
            raise IIPAError(f"{self.run_dir}: holds a run with other settings ({'; '.join(conflicts)}); "
                            "use another --out or the same options to resume")
        self.model.net.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        st.set_rng_state(saved["rng"])
        self.step, self.epoch, self.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        self.best_acc, self.done = saved["best_acc"], saved["done"]
        more_steps = self.config.max_steps is None or self.step < self.config.max_steps
        if self.done and self.epoch < self.config.epochs and more_steps:
            # a finished run asked for more (a larger --epochs or --max-steps): train on from its state,
            # as a run started with these settings would have (the lr decay is per epoch, not per run)
            self.done = False
            if self.main:
                print(f"iipa train: {self.run_dir} finished after {self.epoch} epochs (step {self.step}); "
                      f"continuing to {self.config.epochs} epochs", file=sys.stderr)
        elif self.main and not self.done:
            print(f"iipa train: resuming {self.run_dir} at step {self.step} (epoch {self.epoch + 1}, "
                  f"batch {self.batch_in_epoch})", file=sys.stderr)
            self.log.write(event="resume", step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch)
        return True

    def checkpoint(self) -> None:
        if self.main:
            st.save_state(self.run_dir, self._state())
            self._save_model(self.run_dir / st.LAST)
            self.log.write(event="checkpoint", step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_in_epoch)
        self.dist.barrier()

    def _save_model(self, path: Path, **metrics: Any) -> None:
        from iipa.model.checkpoint import save_checkpoint

        # The validation pairs chose the epoch kept as best.pt: their figure is labelled, not a headline.
        estimate = ({"selection_accounts": {"what": "validation pairs of the pairs table", "accuracy": self.best_acc,
                                            "note": "these pairs chose the epoch: optimistic"},
                     "note": "no accounts that chose nothing: no estimate of accuracy on unseen accounts"}
                    if self.best_acc is not None else None)
        self.model.info = {"config": self.config.to_dict(), "domain": self.config.domain,
                           "metrics": {"step": self.step, "epoch": self.epoch, "best_val_accuracy": self.best_acc, **metrics},
                           **self.card_facts({"pairs": f"the training pairs of {Path(self.config.pairs).name}"},
                                             estimate)}
        save_checkpoint(self.model, path)

    # -- one step -----------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model.profile.normalize(x).to(self.device, non_blocking=True)
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def train_step(self, ddp_model: nn.Module, a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        y = y.to(self.device)
        with self._autocast():
            logits = pair_logits(ddp_model, self._inputs(a), self._inputs(b)).float()
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        acc = ((logits.detach() > 0) == (y > 0.5)).float().mean().item()
        return loss.item(), acc

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """Pairwise accuracy on the validation pairs (rank 0 only; centre crops)."""
        if not self.main or len(self.val_df) == 0:
            return None
        paths = sorted(set(self.val_df["high_path"]) | set(self.val_df["low_path"]))
        scores = dict(zip(paths, self._score(paths), strict=True))
        result = pairwise_accuracy(self.val_df["high_path"].map(scores), self.val_df["low_path"].map(scores))
        self.model.train()
        return result

    def _score(self, paths: list[str]) -> np.ndarray:
        scorer = make_scorer(self.model, device=str(self.device), precision=self.config.precision,
                             batch_size=self.per_rank_batch * 2, channels_last=self.config.channels_last)
        return score_paths(scorer, paths)

    def _after_validation(self, result: dict[str, Any] | None) -> None:
        if result is None:
            return
        acc = result["accuracy"]
        self.log.write(event="val", step=self.step, epoch=self.epoch, val_accuracy=acc, val_ci95=result["ci95"],
                       val_pairs=result["n"], val_ties=result["ties"])
        print(f"iipa train: step {self.step}: validation pairwise accuracy {acc:.4f} "
              f"(95% CI {result['ci95'][0]:.3f}-{result['ci95'][1]:.3f}, n={result['n']})", file=sys.stderr)
        if self.best_acc is None or acc > self.best_acc:
            self.best_acc = acc
            self._save_model(self.run_dir / st.BEST, val_accuracy=acc, val_ci95=result["ci95"])

    # -- the run ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.resume()
        ddp_model = self.dist.wrap(self.model, self.device)
        self.model.train()
        started, stop = time.time(), False
        if self.done and self.main:
            print(f"iipa train: {self.run_dir} already finished at step {self.step} after {self.epoch} epochs; "
                  "a larger --epochs (or --max-steps) trains on", file=sys.stderr)
        while not self.done and not stop and self.epoch < self.config.epochs:
            stop = self._run_epoch(ddp_model)
        if not self.done:
            self.done = True
            self.dist.sync_buffers(self.model)
            if stop or not (self.run_dir / st.BEST).exists():  # max_steps ended mid-epoch
                self._after_validation(self.validate())
            self._finish()
            self.checkpoint()
        return self._summary(time.time() - started)

    def _run_epoch(self, ddp_model: nn.Module) -> bool:
        """Train the rest of the current epoch; True when max_steps stopped it."""
        c = self.config
        self.train_set.set_epoch(self.epoch)
        indices = epoch_indices(len(self.train_set), epoch=self.epoch, seed=c.seed, rank=self.dist.rank, world=self.dist.world)
        batches = math.ceil(len(indices) / self.per_rank_batch)
        loader = pair_loader(self.train_set, indices[self.batch_in_epoch * self.per_rank_batch:],
                             batch_size=self.per_rank_batch, workers=self.workers, pin_memory=self.device.type == "cuda")
        bar = _progress(batches, self.batch_in_epoch, f"epoch {self.epoch + 1}/{c.epochs}", self.main and c.progress)
        window: list[tuple[float, float, int, int]] = []
        for a, b, y, skipped in loader:
            if len(y):  # empty only if 16 pairs in a row lack images
                loss, acc = self.train_step(ddp_model, a, b, y)
                window.append((loss, acc, len(y), skipped))
            self.step += 1
            self.batch_in_epoch += 1
            bar.update(1)
            if window:
                bar.set_postfix(loss=f"{window[-1][0]:.3f}", acc=f"{window[-1][1]:.2f}")
            if self.step % c.log_every == 0 and window:
                self._log_window(window)
                window = []
            if c.val_every and self.step % c.val_every == 0:
                self._after_validation(self.validate())
            if self.step % c.checkpoint_every == 0:
                self.checkpoint()
            if c.max_steps is not None and self.step >= c.max_steps:
                bar.close()
                return True
        bar.close()
        if window:
            self._log_window(window)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.scheduler.step()  # the paper's x0.95 after every epoch
        self._after_validation(self.validate())
        self.checkpoint()
        return False

    def _log_window(self, window: list[tuple[float, float, int, int]]) -> None:
        n = sum(w[2] for w in window)
        self.log.write(event="train", step=self.step, epoch=self.epoch,
                       loss=sum(w[0] * w[2] for w in window) / n, accuracy=sum(w[1] * w[2] for w in window) / n,
                       lr=[g["lr"] for g in self.optimizer.param_groups],
                       skipped_unreadable=sum(w[3] for w in window))

    def _finish(self) -> None:
        """Give best.pt and last.pt the reference score distribution (levels, 0-100 scale)."""
        if not self.main:
            return
        from iipa.model.checkpoint import save_checkpoint
        from iipa.model.record import load_model

        reference = self._reference()
        self.model.reference = reference
        self._save_model(self.run_dir / st.LAST)
        best_path = self.run_dir / st.BEST
        if best_path.exists():
            best = load_model(best_path)
            best_scores = self._score_with(best)
            best.reference = _reference_from(best_scores, reference["source"])
            save_checkpoint(best, best_path)
            if len(self.val_df):  # the validation pairs' score differences under the best model
                by_path = dict(zip(self._reference_paths()[0], best_scores, strict=True))
                hi, lo = self.val_df["high_path"].map(by_path), self.val_df["low_path"].map(by_path)
                ok = (hi.notna() & lo.notna()).to_numpy()
                self.held_out = ((hi - lo).to_numpy(np.float64)[ok], np.ones(int(ok.sum())))
        self._calibrate()

    def _reference_paths(self) -> tuple[list[str], str]:
        if len(self.val_df):
            df, what = self.val_df, "validation"
        else:
            df, what = self.train_set_frame(), "training"
        paths = sorted(set(df["high_path"]) | set(df["low_path"]))[:5000]
        return paths, f"model scores on {len(paths)} {what} images of {self.config.pairs}"

    def train_set_frame(self):
        import pandas as pd

        return pd.DataFrame({"high_path": self.train_set.high, "low_path": self.train_set.low})

    def _reference(self) -> dict[str, Any]:
        paths, source = self._reference_paths()
        return _reference_from(self._score(paths), source)

    def _score_with(self, model: PopularityNet) -> np.ndarray:
        paths, _ = self._reference_paths()
        return score_paths(model, paths, device=str(self.device), precision=self.config.precision,
                           batch_size=self.per_rank_batch * 2)

    def _summary(self, seconds: float) -> dict[str, Any]:
        summary = {"out": str(self.run_dir), "steps": self.step, "epochs_completed": self.epoch,
                   "best_val_accuracy": self.best_acc, "seconds_this_run": round(seconds, 2),
                   "best": str(self.run_dir / st.BEST), "last": str(self.run_dir / st.LAST),
                   "world_size": self.dist.world, "weights_digest_per_rank": self.dist.gather_digest(self.model),
                   "dropped_missing_images": self.missing}
        if self.main:
            st.write_json(self.run_dir / st.SUMMARY, summary)
        self.dist.close()
        self.summary = summary
        return summary


def default_train_workers(device: torch.device) -> int:
    """Decoding processes for training.

    On a GPU the CPUs are free for decoding: half of them, 1-4. On the CPU a decoding
    process competes with the model's intra-op threads, and an OpenMP region is as slow as
    its slowest thread: on 2 cores, 1 worker cut training to 66-74% of the model-only rate
    while decoding in the main process kept 92-95% (benchmarks/train.py, 1080 px JPEGs).
    So small CPUs decode inline, larger ones give a few cores to workers and the rest to
    the model.
    """
    if device.type == "cuda":
        return default_workers()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus <= 4:
        return 0
    workers = min(4, cpus // 8) or 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cpus - workers)))
    return workers


def _reference_from(scores: np.ndarray, source: str) -> dict[str, Any]:
    reference = reference_distribution(scores.tolist(), source=source)
    if reference is None:
        raise IIPAError("cannot compute the reference score distribution: fewer than 2 readable images")
    return reference


def _progress(total: int, initial: int, desc: str, enabled: bool | None):
    from iipa.progress import progress as progress_bar

    return progress_bar(total, enabled=enabled, desc=desc, unit="batch", initial=initial)
