"""Grad-CAM heatmaps of a popularity score (paper §4.3, Fig. 7) and of a pair's score difference.

The CAM itself comes from the maintained ``grad-cam`` library (``pytorch_grad_cam``). Our
model has one regression output, not class logits, so the target is the score itself
(:class:`ScoreTarget`; ``-1`` explains what pulls the score down). The library's only
assumption that does not hold for us, "the output is a logit vector", is thereby avoided;
everything else (hooks on ``model.cam_layer``, gradient averaging, ReLU, min-max
scaling) is its standard Grad-CAM.

The network sees the image through its preprocessing profile (resize, then a centre crop
for ``paper``/``efficientnet``/``small``). :func:`gradcam` maps the CAM back through that
geometry onto the *original* image: inside the crop it is the CAM, outside (pixels the
model never saw) it is 0. Heatmaps are float32 in [0, 1]; 1 is the most important region
of this image (the scale is per image, as in the paper's figures, not comparable across
images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from iipa.images import ImageInput, open_image
from iipa.models import PopularityNet
from iipa.profiles import Profile


class ScoreTarget:
    """Grad-CAM target for a one-output model: ``sign * score`` (the library calls it per sample)."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = float(sign)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output


def _crop_box(profile: Profile, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(resized w, h) and the (left, top, right, bottom) crop box the profile takes from it.

    Computed on a blank image by the profile itself, so it follows the profile's rounding.
    """
    resized = profile.resize_image(Image.new("L", size)).size
    if profile.crop is None:
        return resized, (0, 0, resized[0], resized[1])
    w, h = resized
    c = profile.crop
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    return resized, (left, top, left + c, top + c)


def cam_to_original(cam: np.ndarray, profile: Profile, size: tuple[int, int]) -> np.ndarray:
    """A CAM at the network's input size -> a heatmap of ``size`` (w, h) of the original image."""
    resized, (left, top, right, bottom) = _crop_box(profile, size)
    canvas = np.zeros((resized[1], resized[0]), dtype=np.float32)
    crop = Image.fromarray(cam.astype(np.float32), mode="F").resize((right - left, bottom - top), Image.BILINEAR)
    canvas[top:bottom, left:right] = np.asarray(crop, dtype=np.float32)
    out = np.asarray(Image.fromarray(canvas, mode="F").resize(size, Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def _input_batch(model: PopularityNet, images: list[Image.Image]) -> torch.Tensor:
    device = next(model.parameters()).device
    batch = torch.stack([model.profile.to_uint8(img) for img in images])
    return model.profile.normalize(batch).to(device)


def _cams(model: PopularityNet, images: list[Image.Image], signs: list[float]) -> tuple[np.ndarray, list[float]]:
    """Grad-CAMs at the input size (N x h x w) and the scores, one forward/backward pass."""
    from pytorch_grad_cam import GradCAM

    was_training = model.training
    model.eval()
    x = _input_batch(model, images)
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[model.cam_layer]) as cam:
            # Input gradients on: the CAM layer's output must require grad even when the
            # caller froze every parameter (the library's gradient hook needs it).
            cam.compute_input_gradient = True
            maps = cam(input_tensor=x, targets=[ScoreTarget(s) for s in signs])
            scores = cam.outputs.detach().float().cpu().reshape(-1).tolist()
    finally:
        model.train(was_training)
    return np.nan_to_num(np.asarray(maps, dtype=np.float32)), scores


def gradcam(model: PopularityNet, image: ImageInput, *, sign: float = 1.0) -> np.ndarray:
    """Grad-CAM of the score: float32 H x W in [0, 1] at the original image's size.

    ``image``: a path, PIL image, array or bytes (opened like :func:`iipa.images.open_image`).
    ``sign=-1`` shows the regions that lower the score instead.
    """
    img = open_image(image)
    maps, _ = _cams(model, [img], [sign])
    return cam_to_original(maps[0], model.profile, img.size)


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


def heatmap_overlay(model: PopularityNet, image: ImageInput, *, alpha: float = 0.5) -> Image.Image:
    """The image with its Grad-CAM blended on top, RGB, at the original image's size."""
    img = open_image(image)
    maps, _ = _cams(model, [img], [1.0])
    return overlay(img, cam_to_original(maps[0], model.profile, img.size), alpha=alpha)


@dataclass
class Explanation:
    """One image's explanation: the score and its heatmap at the original size."""

    image: Image.Image
    score: float
    heatmap: np.ndarray

    def overlay(self, alpha: float = 0.5) -> Image.Image:
        return overlay(self.image, self.heatmap, alpha=alpha)


def explain(model: PopularityNet, image: ImageInput) -> Explanation:
    """Score and Grad-CAM of one image from a single forward/backward pass."""
    img = open_image(image)
    maps, scores = _cams(model, [img], [1.0])
    return Explanation(img, scores[0], cam_to_original(maps[0], model.profile, img.size))


@dataclass
class PairExplanation:
    """Why f(A) - f(B) is what it is: ``a.heatmap`` shows the regions of A that raise the
    difference (raise f(A)), ``b.heatmap`` the regions of B that raise it (lower f(B))."""

    a: Explanation
    b: Explanation

    @property
    def difference(self) -> float:
        return self.a.score - self.b.score


def explain_pair(model: PopularityNet, image_a: ImageInput, image_b: ImageInput) -> PairExplanation:
    """Grad-CAM of d = f(A) - f(B) on each side of the Siamese pair.

    The two branches share weights and d is linear in the two scores, so the gradient of d
    at A's CAM layer is that of +f(A) and at B's that of -f(B): one batch of two with
    targets +score and -score is exactly Grad-CAM of the difference. Pass the more popular
    image as A to see what makes it win.
    """
    img_a, img_b = open_image(image_a), open_image(image_b)
    maps, scores = _cams(model, [img_a, img_b], [1.0, -1.0])
    return PairExplanation(
        Explanation(img_a, scores[0], cam_to_original(maps[0], model.profile, img_a.size)),
        Explanation(img_b, scores[1], cam_to_original(maps[1], model.profile, img_b.size)),
    )
