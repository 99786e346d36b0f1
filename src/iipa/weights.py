"""Named weights and ``load_model``: one resolution order for every entry point.

``load_model(spec)`` accepts, in this order: a ``PopularityNet`` (returned as is), a path
to a checkpoint file, or the name of registered weights, which is looked up in the cache
dir (``$IIPA_HOME/weights``, default ``~/.cache/iipa/weights``) and downloaded there on
first use: resumable, written atomically, checksum-verified when the checksum is known.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iipa.errors import IIPAError, WeightsError
from iipa.levels import AUTHORS_REFERENCE
from iipa.weights_store import OFFLINE_ENV, offline, record_sha256, recorded_sha256

if TYPE_CHECKING:  # torch is imported by load_model only: the registry is read by `iipa --help`
    from iipa.models import PopularityNet

CHUNK = 1 << 20
# The model every entry point uses when none is named (`iipa score`, `load_model`, ...).
DEFAULT_MODEL = "instagram-lite0"


@dataclass(frozen=True)
class NamedWeights:
    name: str
    filename: str
    url: str
    arch: str
    profile: str
    sha256: str | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    homepage: str = ""


_WEIGHTS: dict[str, NamedWeights] = {}


def register_weights(entry: NamedWeights, *, replace: bool = False) -> NamedWeights:
    if entry.name in _WEIGHTS and not replace:
        raise ValueError(f"weights {entry.name!r} are already registered")
    _WEIGHTS[entry.name] = entry
    return entry


def get_weights(name: str) -> NamedWeights:
    try:
        return _WEIGHTS[name]
    except KeyError:
        raise IIPAError(f"unknown weights {name!r}; known: {', '.join(list_weights())}") from None


def list_weights() -> list[str]:
    return sorted(_WEIGHTS)


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
))


# Weights that ship inside the package (no download, work offline).
PACKAGED_WEIGHTS_DIR = Path(__file__).resolve().parent / "assets" / "weights"


register_weights(NamedWeights(
    name="instagram-lite0",
    filename="instagram-lite0.pt",
    url="",  # ships inside the package (iipa/assets/weights/): no download, works offline
    arch="efficientnet_lite0",
    profile="efficientnet",
    description="EfficientNet-Lite0 (ImageNet) with a linear score head fitted on real Instagram photos "
                "(instagram-dev, all 572 accounts); see its card for data, cross-validated accuracy on unseen "
                "accounts and limits.",
))


def iipa_home() -> Path:
    return Path(os.environ.get("IIPA_HOME") or Path.home() / ".cache" / "iipa")


def weights_path(entry: NamedWeights) -> Path:
    """Where the file is: inside the package for shipped weights, else in the cache dir."""
    packaged = PACKAGED_WEIGHTS_DIR / entry.filename
    if not entry.url or packaged.is_file():
        return packaged
    return iipa_home() / "weights" / entry.filename


def resolve_weights(name: str, *, download: bool = True, retries: int = 3) -> Path:
    """Local path of named weights, downloading them into the cache dir if needed."""
    entry = get_weights(name)
    target = weights_path(entry)
    if target.is_file():
        return target
    if not entry.url:
        raise WeightsError(f"weights {entry.name!r} ship inside the package but {target} is missing: reinstall iipa")
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


def load_model(spec: str | os.PathLike | PopularityNet | None = None, *,
               device: str | None = None, download: bool = True) -> PopularityNet:
    """A ready-to-score ``PopularityNet`` (eval mode) from a model, a file or a weights name
    (default: ``DEFAULT_MODEL``)."""
    from iipa.checkpoint import load_checkpoint
    from iipa.models import PopularityNet

    spec = DEFAULT_MODEL if spec is None else spec
    if isinstance(spec, PopularityNet):
        model = spec
    elif Path(spec).is_file():
        model = load_checkpoint(spec)
    elif isinstance(spec, str) and spec in _WEIGHTS:
        model = load_checkpoint(resolve_weights(spec, download=download))
        entry = _WEIGHTS[spec]
        model.info.setdefault("weights", entry.name)
        if model.reference is None and entry.reference:
            model.reference = dict(entry.reference)
    else:
        raise IIPAError(
            f"--model {os.fspath(spec)!r} is neither a checkpoint file nor named weights "
            f"(known: {', '.join(list_weights())})"
        )
    model.eval()
    return model.to(device) if device else model
