"""Download the images of a pairs or posts table into an id-named cache, ``<dir>/<post_id>.<ext>``.

Concurrent (threads), retried with exponential backoff, resumable (a post whose image is
already in the cache is skipped), validated (the body must decode as an image: an HTML
login or error page, a truncated body or a non-image is refused) and atomic (written to a
hidden temporary file, then renamed). Links that stay broken are reported, never fatal:
training and evaluation drop pairs whose images are missing, with a count.

Only ``http`` and ``https`` URLs are fetched, redirects included: a ``file://``, ``ftp://``
or ``data:`` URL (or a redirect to one) is a dead link with the reason, so a posts table
cannot make iipa copy local files into the image folder.

Outcomes per post: ``ok`` (downloaded), ``cached`` (already there), ``dead`` (HTTP 404/410/
403/401, HTML or not an image: retrying will not help), ``failed`` (network errors, time-outs,
5xx, 429 or truncated bodies that persisted through every retry).
"""

from __future__ import annotations

import http.client
import io
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from iipa.csvsafe import SafeWriter
from iipa.errors import IIPAError, ImageError
from iipa.fileio import atomic_open, write_bytes
from iipa.images import image_path_for, open_image

EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
DEAD_HTTP = (401, 403, 404, 410)
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class _Permanent(Exception):
    """Retrying will not help (dead link, HTML page, not an image)."""


SCHEMES = ("http", "https")


def _scheme_refusal(url: str) -> str | None:
    """Why ``url`` may not be fetched (not http or https), or None."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in SCHEMES:
        return None
    return f"refused: {scheme + ':' if scheme else 'no scheme in the'} URL (only http and https are fetched)"


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to anything but http(s) are dead links (urllib would follow ftp:// ones)."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("Location") or headers.get("URI") or ""
        why = _scheme_refusal(urllib.parse.urljoin(req.full_url, target))
        if why:
            raise _Permanent(f"redirect {why}")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


@dataclass
class FetchOutcome:
    post_id: str
    url: str
    status: str  # ok | cached | dead | failed
    error: str = ""
    path: str = ""
    attempts: int = 0


@dataclass
class FetchSummary:
    outcomes: list[FetchOutcome] = field(default_factory=list)
    report: Path | None = None

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(o.status for o in self.outcomes)
        return {k: c.get(k, 0) for k in ("ok", "cached", "dead", "failed")}

    @property
    def broken(self) -> list[FetchOutcome]:
        return [o for o in self.outcomes if o.status in ("dead", "failed")]


def items_from_table(table: str | os.PathLike, *, url_template: str | None = None,
                     posts: list[str] | None = None) -> list[tuple[str, str | None]]:
    """(post_id, URL or None) for every image of a pairs table or a posts table.

    A pairs table (``high_id``/``low_id``) gets its URLs from the ``image_url`` column of
    ``posts`` files when given, else from ``url_template``; a posts table from its own
    ``image_url`` column, else the template.
    """
    import duckdb
    import pandas as pd

    from iipa.pairs.schema import expand_post_files, reader_sql
    from iipa.pairs.table import read_pairs

    path = Path(table)
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS {reader_sql(expand_post_files([path]))}")
        cols = {r[0] for r in con.execute("DESCRIBE t").fetchall()}
    except IIPAError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable table
        raise IIPAError(f"{path}: cannot read table ({exc})") from None
    if "high_id" in cols:
        pairs = read_pairs(path)
        ids = list(dict.fromkeys(pd.concat([pairs["high_id"], pairs["low_id"]]).astype(str)))
        urls: dict[str, str] = {}
        if posts:
            con.execute(f"CREATE VIEW p AS {reader_sql(expand_post_files(posts))}")
            pcols = {r[0] for r in con.execute("DESCRIBE p").fetchall()}
            if "image_url" not in pcols or "post_id" not in pcols:
                raise IIPAError("posts files for URLs need post_id and image_url columns")
            con.register("wanted", pd.DataFrame({"post_id": ids}))
            urls = dict(con.execute("SELECT CAST(p.post_id AS VARCHAR), CAST(p.image_url AS VARCHAR) FROM p "
                                    "SEMI JOIN wanted w ON CAST(p.post_id AS VARCHAR) = w.post_id "
                                    "WHERE p.image_url IS NOT NULL").fetchall())
        return [(i, url_for(i, urls.get(i), url_template)) for i in ids]
    if "post_id" not in cols:
        raise IIPAError(f"{path}: neither a pairs table (high_id, low_id) nor a posts table (post_id)")
    url_col = "CAST(image_url AS VARCHAR)" if "image_url" in cols else "NULL"
    rows = con.execute(f"SELECT DISTINCT CAST(post_id AS VARCHAR), {url_col} FROM t WHERE post_id IS NOT NULL "
                       "ORDER BY 1").fetchall()
    return [(i, url_for(i, u, url_template)) for i, u in rows]


def url_for(post_id: str, url: str | None, template: str | None) -> str | None:
    """The post's own URL, else the template (``{post_id}`` is replaced), else None."""
    if url is not None and str(url).strip() and str(url) != "nan":
        return str(url).strip()
    if template:
        return template.replace("{post_id}", post_id)
    return None


def _download(url: str, timeout: float, max_bytes: int, user_agent: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept": "image/*"})
    try:
        with _OPENER.open(request, timeout=timeout) as resp:  # http(s) only, checked in fetch_one
            ctype = (resp.headers.get("Content-Type") or "").lower()
            if "html" in ctype:
                raise _Permanent(f"an HTML page, not an image (Content-Type {ctype})")
            expected = resp.headers.get("Content-Length")
            body = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in DEAD_HTTP:
            raise _Permanent(f"HTTP {exc.code} {exc.reason}") from None
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    if len(body) > max_bytes:
        raise _Permanent(f"larger than {max_bytes} bytes")
    if expected is not None and expected.isdigit() and len(body) < int(expected):
        raise OSError(f"truncated body ({len(body)} of {expected} bytes)")
    return body


def _validate(body: bytes, source: str) -> str:
    """The extension for a body that decodes fully as an image; raises otherwise."""
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise _Permanent("an HTML page, not an image")
    try:
        from PIL import Image

        fmt = Image.open(io.BytesIO(body)).format
        open_image(body)  # decodes every pixel: catches truncation and corruption
    except ImageError as exc:
        if exc.reason == "truncated":
            raise OSError("truncated image") from None
        raise _Permanent(f"not a valid image ({exc.reason})") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for garbage
        raise _Permanent(f"not an image ({exc.__class__.__name__})") from None
    return EXTENSIONS.get(fmt or "", "jpg")


def _write_atomic(out_dir: Path, post_id: str, ext: str, body: bytes) -> Path:
    return write_bytes(out_dir / f"{post_id}.{ext}", body, fsync=True)


def fetch_one(post_id: str, url: str, out_dir: Path, *, retries: int = 3, backoff: float = 0.5,
              timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES, user_agent: str = "iipa-fetch") -> FetchOutcome:
    """Download one image (see module doc for the outcomes)."""
    cached = image_path_for(out_dir, post_id)
    if cached is not None:
        return FetchOutcome(post_id, url, "cached", path=str(cached))
    refused = _scheme_refusal(url)
    if refused:
        return FetchOutcome(post_id, url, "dead", error=refused)
    last = ""
    for attempt in range(retries + 1):
        try:
            body = _download(url, timeout, max_bytes, user_agent)
            ext = _validate(body, url)
            path = _write_atomic(out_dir, post_id, ext, body)
            return FetchOutcome(post_id, url, "ok", path=str(path), attempts=attempt + 1)
        except _Permanent as exc:
            return FetchOutcome(post_id, url, "dead", error=str(exc), attempts=attempt + 1)
        except (OSError, TimeoutError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
            last = str(getattr(exc, "reason", None) or exc) or exc.__class__.__name__
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    return FetchOutcome(post_id, url, "failed", error=last, attempts=retries + 1)


def fetch_images(items: Iterable[tuple[str, str]], out_dir: str | os.PathLike, *, workers: int = 8,
                 retries: int = 3, backoff: float = 0.5, timeout: float = 30.0, max_bytes: int = DEFAULT_MAX_BYTES,
                 report: str | os.PathLike | None = None, user_agent: str = "iipa-fetch",
                 progress: Callable[[FetchOutcome], None] | None = None) -> FetchSummary:
    """Download ``(post_id, url)`` items concurrently into ``out_dir``; write a broken-link report.

    The report (CSV: post_id, url, status, error, attempts) lists dead and failed posts;
    it defaults to ``<out_dir>/fetch_report.csv``.
    """
    if workers < 1 or retries < 0 or timeout <= 0:
        raise IIPAError("workers must be ≥ 1, retries ≥ 0 and timeout > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = list(dict.fromkeys((str(p), u) for p, u in items))  # unique, order kept
    for post_id, _ in items:
        if not post_id or "/" in post_id or "\\" in post_id or post_id.startswith("."):
            raise IIPAError(f"post id {post_id!r} cannot name a file in {out}")
    summary = FetchSummary()
    no_url = [FetchOutcome(p, "", "dead", error="no URL (no image_url and no URL template)") for p, u in items if not u]
    items = [(p, u) for p, u in items if u]

    def job(item):
        outcome = fetch_one(item[0], item[1], out, retries=retries, backoff=backoff, timeout=timeout,
                            max_bytes=max_bytes, user_agent=user_agent)
        if progress:
            progress(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=workers) as pool:
        summary.outcomes = list(pool.map(job, items)) + no_url
    summary.report = Path(report) if report else out / "fetch_report.csv"
    with atomic_open(summary.report, "w", newline="") as fh:
        w = SafeWriter(fh)
        w.writerow(["post_id", "url", "status", "error", "attempts"])
        for o in summary.broken:
            w.writerow([o.post_id, o.url, o.status, o.error, o.attempts])
    return summary
