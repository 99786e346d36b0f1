"""Response bodies, as pydantic models so the OpenAPI document describes them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ImageScore(BaseModel):
    index: int = Field(description="position of the file in the request (0-based)")
    name: str = Field(description="the upload's file name (a label only)")
    score: float | None = Field(None, description="raw model score; higher = more intrinsically popular")
    scaled: float | None = Field(None, description="0-100: percentile under the model's reference distribution")
    level: str | None = Field(None, description="poor | bad | fair | good | excellent")
    error: str | None = Field(None, description="why this image was not scored")
    detail: str | None = None
    status: int | None = Field(None, description="the HTTP status this error alone would get")


class ScoreResponse(BaseModel):
    model: str
    results: list[ImageScore]


class CompareResponse(BaseModel):
    probability_a: float = Field(description="P(A more popular than B) = 1 / (1 + exp(-(score_a - score_b)))")
    a: ImageScore
    b: ImageScore


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None


class Health(BaseModel):
    status: str
    model_worker: bool


class LevelBand(BaseModel):
    name: str
    min_score: float | None = Field(description="inclusive lower edge; null: open-ended")
    max_score: float | None = Field(description="exclusive upper edge; null: open-ended")


class Heatmaps(BaseModel):
    available: bool = Field(description="whether POST /v1/explain can answer")
    reason: str | None = Field(None, description="why not, when it cannot (it then answers 501 with this)")


class ModelCard(BaseModel):
    arch: str
    weights: str | None
    weights_format: str | None
    profile: dict[str, Any]
    input_size: int
    crops: int = Field(description="views per image this server scores by default (a request's crops overrides)")
    runtime: str = Field(description="the backend that scores: onnx (onnxruntime) or torch")
    device: str
    precision: str
    heatmaps: Heatmaps
    score_meaning: str
    score_range: str
    scaled_meaning: str
    compare_meaning: str
    reference: dict[str, Any] | None
    levels: list[LevelBand]
    level_edges: list[float] | None
    paper: str
    limits: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in {
        400: "bad request: undecodable image, malformed multipart body",
        401: "missing or wrong X-API-Key (only when the server has a key)",
        413: "upload too large, too many files, or too many pixels",
        415: "image format not allowed",
        422: "validation error: missing or malformed fields",
        503: "overloaded or timed out; retry later",
    }.items()
}
