"""What an ``iipa export`` ONNX file holds besides the graph: the input/output names and the
``iipa.*`` metadata (see :mod:`iipa.export`). Reading it needs neither torch nor onnx, so
scoring an exported file through onnxruntime does not import them.
"""

from __future__ import annotations

import json
import os
from typing import Any

from iipa.errors import IIPAError
from iipa.profiles import Profile

INPUT_NAME = "image"
OUTPUT_NAME = "score"
INPUT_DOC = ("uint8 N x 3 x S x S RGB, resized and cropped as iipa.profile says "
             "(normalisation happens inside the graph); output: float32 scores, N")


def parse_onnx_metadata(props: dict[str, str], path: str | os.PathLike) -> dict[str, Any]:
    """The iipa metadata from an ONNX file's ``metadata_props`` (read by onnx or onnxruntime)."""
    if "iipa.profile" not in props:
        raise IIPAError(f"{path}: ONNX file without iipa metadata (iipa.profile); export it with `iipa export`")
    try:
        return {
            "arch": props.get("iipa.arch"),
            "version": props.get("iipa.version"),
            "profile": Profile.from_dict(json.loads(props["iipa.profile"])),
            "reference": json.loads(props.get("iipa.reference", "null")),
            "info": json.loads(props.get("iipa.info", "{}")),
        }
    except (ValueError, TypeError) as exc:
        raise IIPAError(f"{path}: malformed iipa metadata ({exc})") from None
