"""The /v1 endpoints. Each one: check every upload from its header (a request decoding
too many pixels in all gets 413 before anything is decoded), decode each inside the
service's pixel budget, off the loop, hand its views (``crops`` per image, as ``iipa score
--crops``) to the micro-batcher, describe the scores with :mod:`iipa.levels`."""

from __future__ import annotations

import asyncio
import hmac
import io
from typing import Any

from fastapi import APIRouter, Depends, File, Query, Response, UploadFile
from fastapi.security import APIKeyHeader

from iipa.compare import preference_probability
from iipa.serve.schemas import ERRORS, CompareResponse, ModelCard, ScoreResponse
from iipa.serve.service import Service
from iipa.serve.uploads import ApiError, Upload, safe_label

# Overlays are for looking at: larger images are shrunk first (PNG size and encode time).
EXPLAIN_MAX_SIDE = 1024
CROPS_QUERY = Query(None, description="views per image: 1, 5 (corners + centre) or 10 (the same mirrored); "
                                       "the mean over them is the score (default: the server's, see /v1/model)")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="required only when the server was started with an API key")


def require_key(service: Service):
    """A dependency answering 401 unless X-API-Key matches (constant-time compare)."""

    async def check(key: str | None = Depends(_api_key_header)) -> None:
        expected = service.settings.api_key
        if expected is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header")

    return check


def read_uploads(files: list[UploadFile], service: Service) -> list[Upload]:
    """The request's files as uploads; their bytes stay in the parser's spooled temporary
    files (on disk past 1 MB) until their image is decoded."""
    if len(files) > service.settings.max_files:
        raise ApiError(413, "too many files", f"{len(files)} files > limit {service.settings.max_files}")
    return [Upload(safe_label(f.filename, i), f.file) for i, f in enumerate(files)]


def _error_entry(index: int, name: str, exc: ApiError) -> dict[str, Any]:
    return {"index": index, "name": name, "error": exc.error, "detail": str(exc.detail), "status": exc.status}


async def _try(work: Any) -> Any:
    try:
        return await work
    except ApiError as exc:
        return exc


async def _fail(exc: ApiError) -> Any:
    raise exc


def build_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key(service))], responses=ERRORS)

    async def score_uploads(uploads: list[Upload], crops: int) -> list[dict[str, Any]]:
        probed = [await _try(service.probe(u)) for u in uploads]
        service.check_request_pixels([p for p in probed if isinstance(p, int)])
        prepared = await asyncio.gather(*(service.prepare(u, p, crops=crops) if isinstance(p, int) else _fail(p)
                                          for u, p in zip(uploads, probed, strict=True)),
                                        return_exceptions=True)
        for p in prepared:
            if isinstance(p, BaseException) and not isinstance(p, ApiError):
                raise p
        good = [i for i, p in enumerate(prepared) if not isinstance(p, BaseException)]
        scores = await service.batcher.score([prepared[i] for i in good])
        by_index = dict(zip(good, scores, strict=True))
        results = []
        for i, (u, p) in enumerate(zip(uploads, prepared, strict=True)):
            if isinstance(p, ApiError):
                results.append(_error_entry(i, u.name, p))
            else:
                results.append({"index": i, "name": u.name, **service.describe(by_index[i])})
        return results

    @router.post("/score", response_model=ScoreResponse, summary="Score one or many images")
    async def score(files: list[UploadFile] = File(..., description="one or more image files"),
                    crops: int | None = CROPS_QUERY) -> Any:
        """Per-image score, scaled score and level, in upload order. An image that cannot be
        scored gets ``error``/``detail``/``status`` instead; when *every* image fails, the
        request fails with the first image's status (so a single bad upload gets 400/413/415)."""
        async def work() -> Any:
            results = await score_uploads(read_uploads(files, service), service.crops(crops))
            if all(r.get("error") for r in results):
                first = results[0]
                raise ApiError(first["status"], first["error"], first["detail"])
            return {"model": service.model_name, "results": results}

        return await service.guarded(work)

    @router.post("/compare", response_model=CompareResponse, summary="Probability that A is more popular than B")
    async def compare(image_a: UploadFile = File(...), image_b: UploadFile = File(...),
                      crops: int | None = CROPS_QUERY) -> Any:
        """``probability_a`` = logistic(score_a - score_b), the paper's pairwise model
        (:func:`iipa.compare.preference_probability`, as ``iipa compare``)."""
        async def work() -> Any:
            uploads = read_uploads([image_a, image_b], service)
            a, b = await score_uploads(uploads, service.crops(crops))
            for r in (a, b):
                if r.get("error"):
                    raise ApiError(r["status"], r["error"], r["detail"])
            return {"probability_a": preference_probability(a["score"], b["score"]), "a": a, "b": b}

        return await service.guarded(work)

    @router.post("/explain", summary="Grad-CAM heatmap over the image (PNG)",
                 responses={200: {"content": {"image/png": {}}, "description": "the overlay as a PNG"},
                            501: {"description": "no heatmaps here: the model has no PyTorch weights or "
                                                 "PyTorch is not installed (the detail says which)"}})
    async def explain(file: UploadFile = File(...), crops: int | None = CROPS_QUERY) -> Response:
        """Which regions raised the score: a Grad-CAM heatmap blended over the image, from the
        model's PyTorch weights (loaded on first use). The score, the one /v1/score gives, is
        returned in the ``X-IIPA-Score`` header."""
        reason = service.heatmaps_unavailable()
        if reason:
            raise ApiError(501, "not implemented", reason)
        from iipa.explain import heatmap_overlay

        async def work() -> Response:
            (upload,) = read_uploads([file], service)
            # Scored exactly as /v1/score scores it; the overlay is drawn on a larger decode.
            views = await service.prepare(upload, crops=service.crops(crops))
            (score,) = await service.batcher.score([views])
            async with service.decoded(upload, draft_size=(EXPLAIN_MAX_SIDE, EXPLAIN_MAX_SIDE)) as img:
                img.thumbnail((EXPLAIN_MAX_SIDE, EXPLAIN_MAX_SIDE))  # a PNG for a page, not a print
                overlay = await service.batcher.run(lambda: heatmap_overlay(service.heatmap_model(), img))
            buf = io.BytesIO()
            overlay.save(buf, format="PNG")
            meaning = service.describe(score)
            headers = {"X-IIPA-Score": f"{score:.6f}"}
            if meaning["level"]:
                headers["X-IIPA-Level"] = meaning["level"]
                headers["X-IIPA-Scaled"] = f"{meaning['scaled']:.2f}"
            return Response(buf.getvalue(), media_type="image/png", headers=headers)

        return await service.guarded(work)

    @router.get("/model", response_model=ModelCard, summary="Model card")
    async def model_card() -> Any:
        """Architecture, weights, preprocessing, what a score means, its reference and levels."""
        return service.card()

    return router
