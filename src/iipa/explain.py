"""Grad-CAM heatmaps of a popularity score (paper §4.3, Fig. 7) and of a pair's score difference.

The CAM itself comes from the maintained ``grad-cam`` library (``pytorch_grad_cam``). Our
model has one regression output, not class logits, so the target is the score itself
(:class:`ScoreTarget`; ``-1`` explains what pulls the score down). The library's only
assumption that does not hold for us, "the output is a logit vector", is thereby avoided;
everything else (hooks on ``model.cam_layer``, gradient averaging, ReLU, min-max
scaling) is its standard Grad-CAM.

The network sees the image through its profile's one preprocessing function
(:meth:`Profile.prepare`: decoding, resize, then a centre crop for ``paper``/``efficientnet``/
``small``), and the score reported beside a heatmap comes from :class:`~iipa.scoring.Scorer`,
so it is the score ``iipa score`` gives (same precision). :func:`gradcam` maps the CAM back through that
geometry onto the *original* image: inside the crop it is the CAM, outside (pixels the
model never saw) it is 0. Heatmaps are float32 in [0, 1]; 1 is the most important region
of this image (the scale is per image, as in the paper's figures, not comparable across
images).

Not thread-safe against other forward passes of the *same* model object: while a CAM is
computed, hooks on ``model.cam_layer`` record every forward and the parameters are frozen
for its duration. A server that scores and explains concurrently should explain with its
own copy (``copy.deepcopy(model)``) or hold one lock around both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from iipa.backbones.popularity_net import PopularityNet
from iipa.errors import IIPAError
from iipa.fileio import atomic_open, atomic_path
from iipa.images import ImageInput, open_image
from iipa.model.record import TORCH_EXTRA
from iipa.profiles import Profile
from iipa.scoring import Scorer, make_scorer

ModelOrScorer = PopularityNet | Scorer


class ScoreTarget:
    """Grad-CAM target for a one-output model: ``sign * score`` (the library calls it per sample)."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = float(sign)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output


def cam_to_original(cam: np.ndarray, profile: Profile, size: tuple[int, int],
                    out_size: tuple[int, int] | None = None) -> np.ndarray:
    """A CAM at the network's input size -> a heatmap of the image the profile was given,
    ``size`` (w, h), or of ``out_size`` (e.g. the full-size image behind a draft decode)."""
    resized = profile.resize_image(Image.new("L", size)).size
    left, top, right, bottom = profile.centre_box(*resized)
    canvas = np.zeros((resized[1], resized[0]), dtype=np.float32)
    crop = Image.fromarray(cam.astype(np.float32), mode="F").resize((right - left, bottom - top), Image.BILINEAR)
    canvas[top:bottom, left:right] = np.asarray(crop, dtype=np.float32)
    out = np.asarray(Image.fromarray(canvas, mode="F").resize(out_size or size, Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def as_scorer(model: ModelOrScorer) -> Scorer:
    """The Scorer whose scores an explanation reports (a model is scored on its own device)."""
    if isinstance(model, Scorer):
        return model
    return make_scorer(model, device=str(next(model.parameters()).device), num_workers=0, runtime="torch")


def _net(model: ModelOrScorer) -> PopularityNet:
    return model.torch_model() if isinstance(model, Scorer) else model


@dataclass
class _Prepared:
    display: Image.Image  # the image as the user sees it (full size, upright)
    decoded: tuple[int, int]  # the size the profile decoded it at (smaller under draft decoding)
    tensor: torch.Tensor  # uint8 3 x S x S network input (the centre view)
    views: np.ndarray  # uint8 V x S x S x 3: the views its score is the mean of


def _prepare(profile: Profile, image: ImageInput, crops: int = 1) -> _Prepared:
    img = profile.open(image)
    encoded = isinstance(image, (str, os.PathLike, bytes))
    display = open_image(image) if profile.decode == "draft" and encoded else img
    return _Prepared(display, img.size, profile.to_uint8(img), profile.image_views(img, crops))


def _heatmap(cam: np.ndarray, profile: Profile, p: _Prepared) -> np.ndarray:
    return cam_to_original(cam, profile, p.decoded, p.display.size)


def _cams(model: PopularityNet, batch: torch.Tensor, signs: list[float]) -> np.ndarray:
    """Grad-CAMs at the input size (N x h x w) of a uint8 batch, one forward/backward pass."""
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError as exc:
        raise IIPAError(f"Grad-CAM needs the grad-cam package: {TORCH_EXTRA} ({exc})") from None

    was_training = model.training
    params = list(model.parameters())
    # Weight gradients are not needed (about half of the backward pass) and the library's
    # zero_grad() would wipe a training loop's .grad: freeze, and restore both afterwards.
    saved = [(p.requires_grad, p.grad) for p in params]
    for p in params:
        p.requires_grad_(False)
    model.eval()
    x = model.profile.normalize(batch).to(next(model.parameters()).device)
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[model.cam_layer]) as cam:
            # Input gradients on: with the parameters frozen, this is what makes the CAM
            # layer's output require grad (the library's gradient hook needs it).
            cam.compute_input_gradient = True
            maps = cam(input_tensor=x, targets=[ScoreTarget(s) for s in signs])
    finally:
        model.train(was_training)
        for p, (requires_grad, grad) in zip(params, saved, strict=True):
            p.requires_grad_(requires_grad)
            p.grad = grad
    return np.nan_to_num(np.asarray(maps, dtype=np.float32))


def gradcam(model: ModelOrScorer, image: ImageInput, *, sign: float = 1.0) -> np.ndarray:
    """Grad-CAM of the score: float32 H x W in [0, 1] at the original image's size.

    ``image``: a path, PIL image, array or bytes (opened like :func:`iipa.images.open_image`).
    ``sign=-1`` shows the regions that lower the score instead.
    """
    net = _net(model)
    p = _prepare(net.profile, image)
    return _heatmap(_cams(net, p.tensor[None], [sign])[0], net.profile, p)


def colorize(heatmap: np.ndarray, *, cmap: str = "jet") -> np.ndarray:
    """H x W in [0, 1] -> H x W x 3 uint8 (jet: warm = contributes more, as in Fig. 7)."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image: Image.Image, heatmap: np.ndarray, *, alpha: float = 0.5) -> Image.Image:
    """Blend a colourised heatmap of the image's size onto the image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    if base.shape[:2] != heatmap.shape:
        raise ValueError(f"heatmap {heatmap.shape} does not match image {base.shape[:2]}")
    mixed = (1.0 - alpha) * base + alpha * colorize(heatmap).astype(np.float32)
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def heatmap_overlay(model: ModelOrScorer, image: ImageInput, *, alpha: float = 0.5) -> Image.Image:
    """The image with its Grad-CAM blended on top, RGB, at the original image's size."""
    net = _net(model)
    p = _prepare(net.profile, image)
    return overlay(p.display, _heatmap(_cams(net, p.tensor[None], [1.0])[0], net.profile, p), alpha=alpha)


@dataclass
class Explanation:
    """One image's explanation: the score and its heatmap at the original size."""

    image: Image.Image
    score: float
    heatmap: np.ndarray

    def overlay(self, alpha: float = 0.5) -> Image.Image:
        return overlay(self.image, self.heatmap, alpha=alpha)


def explain(model: ModelOrScorer, image: ImageInput) -> Explanation:
    """Score (:class:`Scorer`'s, the one ``iipa score`` gives) and Grad-CAM of one image.
    Pass a Scorer when explaining many images: it fixes device and precision once."""
    scorer = as_scorer(model)
    p = _prepare(scorer.profile, image, scorer.crops)
    (score,) = scorer.score_views([p.views])
    cam = _cams(scorer.torch_model(), p.tensor[None], [1.0])[0]
    return Explanation(p.display, score, _heatmap(cam, scorer.profile, p))


@dataclass
class PairExplanation:
    """Why f(A) - f(B) is what it is: ``a.heatmap`` shows the regions of A that raise the
    difference (raise f(A)), ``b.heatmap`` the regions of B that raise it (lower f(B))."""

    a: Explanation
    b: Explanation

    @property
    def difference(self) -> float:
        return self.a.score - self.b.score


def explain_pair(model: ModelOrScorer, image_a: ImageInput, image_b: ImageInput) -> PairExplanation:
    """Grad-CAM of d = f(A) - f(B) on each side of the Siamese pair.

    The two branches share weights and d is linear in the two scores, so the gradient of d
    at A's CAM layer is that of +f(A) and at B's that of -f(B): one batch of two with
    targets +score and -score is exactly Grad-CAM of the difference. Pass the more popular
    image as A to see what makes it win.
    """
    scorer = as_scorer(model)
    a, b = _prepare(scorer.profile, image_a, scorer.crops), _prepare(scorer.profile, image_b, scorer.crops)
    scores = scorer.score_views([a.views, b.views])
    maps = _cams(scorer.torch_model(), torch.stack([a.tensor, b.tensor]), [1.0, -1.0])
    return PairExplanation(
        Explanation(a.display, scores[0], _heatmap(maps[0], scorer.profile, a)),
        Explanation(b.display, scores[1], _heatmap(maps[1], scorer.profile, b)),
    )


def pair_figure(pair: PairExplanation, *, alpha: float = 0.5, height: int = 384) -> Image.Image:
    """A and B overlays side by side at a common height (for a quick look, not for measuring)."""
    tiles = []
    for side in (pair.a, pair.b):
        o = side.overlay(alpha)
        tiles.append(o.resize((max(1, round(o.width * height / o.height)), height), Image.BILINEAR))
    gap = 8
    out = Image.new("RGB", (sum(t.width for t in tiles) + gap, height), "white")
    out.paste(tiles[0], (0, 0))
    out.paste(tiles[1], (tiles[0].width + gap, 0))
    return out


def save_explanation(explanation: Explanation, out_dir: str | os.PathLike, stem: str, *,
                     alpha: float = 0.5, raw: bool = False) -> dict[str, Path]:
    """Write ``<stem>.gradcam.png`` (overlay, original size) and with ``raw`` the heatmap as
    ``<stem>.heatmap.npy`` (float32) and ``<stem>.heatmap.png`` (8-bit grey). Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"overlay": save_png(explanation.overlay(alpha), out / f"{stem}.gradcam.png")}
    if raw:
        paths["heatmap"] = out / f"{stem}.heatmap.npy"
        with atomic_open(paths["heatmap"], "wb") as fh:
            np.save(fh, explanation.heatmap.astype(np.float32))
        paths["heatmap_png"] = save_png(Image.fromarray((explanation.heatmap * 255.0 + 0.5).astype(np.uint8), mode="L"),
                                        out / f"{stem}.heatmap.png")
    return paths


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as PNG through the output policy (atomic replace; a FIFO written through)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
