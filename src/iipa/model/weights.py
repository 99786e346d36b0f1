"""Named weights as data: the registry, the cache dir and checksum-verified downloads.

Each :class:`NamedWeights` entry says everything needed to use a weights file (as
torchvision's ``Weights``): the architecture, the preprocessing profile, the reference
score distribution, where the file comes from (a URL with its sha256, or a file shipped
inside the package), the image domain it was trained on, and free-form ``meta``. Loading
named weights builds the model from the entry; the file only supplies the tensors.

A packaged entry loads from the installed package with no network; a downloadable one is
looked up in the cache dir (``$IIPA_HOME/weights``, default ``~/.cache/iipa/weights``) and
downloaded there on first use (:func:`resolve_weights`): resumable, written atomically,
checksum-verified when the checksum is known. What a name, a file or an ONNX export *is*
(its :class:`~iipa.model.record.ModelRecord`) is decided in :mod:`iipa.model.record`.

This module never imports torch, so listing and describing weights stays fast.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

# Defined where `iipa --help` can read it without http.client; re-exported here.
from iipa.constants import DEFAULT_MODEL as DEFAULT_MODEL
from iipa.errors import WeightsError
from iipa.levels import AUTHORS_REFERENCE
from iipa.model import named_cards
from iipa.model.cardschema import CardFacts
from iipa.model.weights_store import OFFLINE_ENV, offline, record_sha256, recorded_sha256
from iipa.registry import Registry

CHUNK = 1 << 20
# How a weights file stores its tensors: "iipa" is our
# checkpoint dict, "state_dict" a plain torchvision state dict (the authors' release).
WEIGHT_FORMATS = ("iipa", "state_dict")


@dataclass(frozen=True)
class NamedWeights:
    """One registered weights file and everything needed to use it.

    ``url`` + ``sha256``: downloaded into the cache dir on first use. ``package_file``: a
    path inside the installed ``iipa`` package (e.g. ``assets/weights/x.pt``), loaded with
    no network; then ``url`` is only where the file was published, if anywhere.
    """

    name: str
    filename: str
    url: str
    arch: str
    profile: str
    sha256: str | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    homepage: str = ""
    domain: str = ""  # what it was trained on: "real" (photos) or "simulated" (the demo's renders)
    meta: dict[str, Any] = field(default_factory=dict)  # facts shown in the card's model table (paper, licence)
    # The card facts (training data, accuracy, baselines, limits), declared here and not in the file.
    card: CardFacts | None = None
    format: str = "iipa"
    package_file: str | None = None
    # An fp32 ONNX export of the same weights, inside the package (like ``package_file``),
    # which CPU scoring runs through onnxruntime (``make_scorer(runtime="auto")``): several times
    # faster than PyTorch's CPU depthwise convolutions, same scores (tests keep it fresh).
    onnx_file: str | None = None

    def __post_init__(self) -> None:
        if self.format not in WEIGHT_FORMATS:
            raise ValueError(f"weights {self.name!r}: format {self.format!r} is not one of {', '.join(WEIGHT_FORMATS)}")

    @property
    def packaged(self) -> bool:
        return self.package_file is not None


_WEIGHTS: Registry[NamedWeights] = Registry("weights")


def register_weights(entry: NamedWeights, *, replace: bool = False) -> NamedWeights:
    return _WEIGHTS.register(entry.name, entry, replace=replace)


def get_weights(name: str) -> NamedWeights:
    return _WEIGHTS.get(name)


def list_weights() -> list[str]:
    return _WEIGHTS.names()


def is_registered(name: object) -> bool:
    """True when ``name`` names registered weights (a string that is not a file path)."""
    return name in _WEIGHTS


register_weights(NamedWeights(
    name="authors-resnet50",
    filename="model-resnet50.pth",
    # The authors publish the file through a OneDrive share (README of their repository);
    # ``download=1`` asks the share for the raw file. Override with $IIPA_AUTHORS_RESNET50_URL.
    url=os.environ.get(
        "IIPA_AUTHORS_RESNET50_URL",
        "https://portland-my.sharepoint.com/:u:/g/personal/keyanding2-c_ad_cityu_edu_hk/"
        "EeQcNCrMrvRIor44lbj9hOsBN6qZ2SafvdB0auO7TAGchg?download=1",
    ),
    arch="resnet50",
    profile="authors",
    sha256=None,  # not published by the authors; verified when a checksum is registered
    reference=dict(AUTHORS_REFERENCE),
    description="ResNet-50 trained by Ding, Ma & Wang on ~2.5M Instagram PDIPs (76.65% test pairwise accuracy).",
    homepage="https://github.com/dingkeyan93/Intrinsic-Image-Popularity",
    domain="real",
    meta={"paper": "Ding, Ma & Wang, ACM MM 2019"},
    card=named_cards.AUTHORS_RESNET50,
    format="state_dict",
))
# A plain state dict loaded from a file (not by name) is the authors' release format.
PLAIN_STATE_DICT_WEIGHTS = "authors-resnet50"


def package_root() -> Path:
    """The installed ``iipa`` package folder, where packaged weights live."""
    return Path(str(resources.files("iipa")))


register_weights(NamedWeights(
    name="instagram-lite0",
    filename="instagram-lite0.pt",
    url="",  # ships inside the package (iipa/assets/weights/): no download, works offline
    arch="efficientnet_lite0_ms",
    profile="efficientnet",
    domain="real",
    package_file="assets/weights/instagram-lite0.pt",
    # Regenerate after retraining the .pt (tests/test_default_onnx.py fails while it is stale):
    #   iipa export --model instagram-lite0 --output src/iipa/assets/weights/instagram-lite0.onnx --check
    onnx_file="assets/weights/instagram-lite0.onnx",
    description="EfficientNet-Lite0 (ImageNet) with a linear score head on its final and middle-stage features, "
                "fitted on real Instagram photos (instagram-dev, all 572 accounts); see its card for data, "
                "cross-validated accuracy on unseen accounts and limits.",
    card=named_cards.INSTAGRAM_LITE0,
))


def iipa_home() -> Path:
    return Path(os.environ.get("IIPA_HOME") or Path.home() / ".cache" / "iipa")


def weights_path(entry: NamedWeights) -> Path:
    """Where the entry's file is (packaged) or will be (cache dir)."""
    if entry.package_file is not None:
        return package_root() / entry.package_file
    return iipa_home() / "weights" / entry.filename


def resolve_weights(name: str, *, download: bool = True, retries: int = 3) -> Path:
    """Local path of named weights, downloading them into the cache dir if needed."""
    entry = get_weights(name)
    target = weights_path(entry)
    if target.is_file():
        return target
    if entry.packaged:
        raise WeightsError(f"weights {entry.name!r} ship with iipa but {target} is missing: "
                           "reinstall iipa (the package data was left out)")
    if not download or offline():
        why = f"offline: {OFFLINE_ENV}=1 or --offline" if download else "downloads are disabled"
        raise WeightsError(_offline_message(entry, target, why))
    try:
        path = download_file(entry.url, target, sha256=entry.sha256 or recorded_sha256(target), retries=retries)
    except WeightsError as exc:
        raise WeightsError(_offline_message(entry, target, str(exc))) from None
    record_sha256(path, file_sha256(path))  # trust on first use: `iipa weights verify` checks against it
    return path


def _offline_message(entry: NamedWeights, target: Path, why: str) -> str:
    return (
        f"weights {entry.name!r} are not in the cache and could not be downloaded ({why}). "
        f"Download {entry.filename} from {entry.homepage or entry.url} and put it at {target} "
        f"(set IIPA_HOME to use another cache dir), or pass the file's path with --model."
    )


def download_file(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
                  retries: int = 3, timeout: float = 30.0, backoff: float = 0.5) -> Path:
    """Download ``url`` to ``dest``: resumes a ``.part`` file, verifies, then renames atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            if _fetch_into(url, part, timeout):
                break
            last_error = WeightsError(f"{url}: connection closed before the whole file arrived")
        except WeightsError:
            raise
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            last_error = exc
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    else:
        raise WeightsError(f"could not download {url}: {last_error}")
    _verify(part, url, sha256)
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, timeout: float) -> bool:
    """One request; appends to ``part`` when the server honours Range. True when complete."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "iipa"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only by registry
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part file is already whole
            return True
        if exc.code in (404, 410, 401, 403):
            raise WeightsError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        raise
    with response:
        if have and response.status != 206:
            have = 0  # server ignored Range: start over
        total = response.headers.get("Content-Length")
        expected = have + int(total) if total is not None else None
        with open(part, "ab" if have else "wb") as fh:
            while chunk := response.read(CHUNK):
                fh.write(chunk)
        size = part.stat().st_size
    return expected is None or size >= expected


def _verify(part: Path, url: str, sha256: str | None) -> None:
    with open(part, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        part.unlink()
        raise WeightsError(f"{url} answered with an HTML page, not a weights file (a login or share page?)")
    if sha256:
        digest = file_sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise WeightsError(f"{url}: checksum mismatch (got sha256 {digest}, expected {sha256}); the corrupt download was deleted")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
