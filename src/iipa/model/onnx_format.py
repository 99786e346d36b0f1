"""What an ``iipa export`` ONNX file holds besides the graph: the input/output names and the
``iipa.*`` metadata (see :mod:`iipa.model.export`).

:func:`read_onnx_metadata` reads that metadata straight from the file's protobuf (the
top-level ``metadata_props`` field), so describing or choosing a backend for an ONNX model
needs neither torch, nor onnx, nor an onnxruntime session (which would build the graph).
"""

from __future__ import annotations

import json
import mmap
import os
from typing import Any

from iipa.errors import IIPAError
from iipa.profiles import Profile

INPUT_NAME = "image"
OUTPUT_NAME = "score"
INPUT_DOC = ("uint8 N x 3 x S x S RGB, resized and cropped as iipa.profile says "
             "(normalisation happens inside the graph); output: float32 scores, N")
# The metadata keys of an iipa ONNX file, one table for the writers (iipa.model.export, and
# iipa.model.quantize, which rewrites the info) and the reader below. Text values are stored as
# they are, JSON values as JSON.
ARCH_KEY, VERSION_KEY, INPUT_KEY = "iipa.arch", "iipa.version", "iipa.input"
PROFILE_KEY, REFERENCE_KEY, INFO_KEY, PARAMETERS_KEY = "iipa.profile", "iipa.reference", "iipa.info", "iipa.parameters"
TEXT_KEYS = {"arch": ARCH_KEY, "version": VERSION_KEY, "input": INPUT_KEY}
JSON_KEYS = {"profile": PROFILE_KEY, "reference": REFERENCE_KEY, "info": INFO_KEY, "parameters": PARAMETERS_KEY}
# ModelProto field numbers (onnx.proto3): metadata_props = 14; StringStringEntryProto key = 1, value = 2.
_METADATA_PROPS, _KEY, _VALUE = 14, 1, 2


def metadata_props(values: dict[str, Any]) -> dict[str, str]:
    """``metadata_props`` entries (key -> text) for the fields of :data:`TEXT_KEYS` and
    :data:`JSON_KEYS` given in ``values``."""
    unknown = set(values) - set(TEXT_KEYS) - set(JSON_KEYS)
    if unknown:
        raise ValueError(f"not iipa ONNX metadata fields: {sorted(unknown)}")
    return {**{TEXT_KEYS[k]: str(v) for k, v in values.items() if k in TEXT_KEYS},
            **{JSON_KEYS[k]: json.dumps(v) for k, v in values.items() if k in JSON_KEYS}}


def parse_onnx_metadata(props: dict[str, str], path: str | os.PathLike) -> dict[str, Any]:
    """The iipa metadata from an ONNX file's ``metadata_props``: arch, version, profile,
    reference, info and parameters (None or {} where the file has none)."""
    if PROFILE_KEY not in props:
        raise IIPAError(f"{path}: ONNX file without iipa metadata ({PROFILE_KEY}); export it with `iipa export`")
    try:
        return {
            "arch": props.get(ARCH_KEY),
            "version": props.get(VERSION_KEY),
            "profile": Profile.from_dict(json.loads(props[PROFILE_KEY])),
            "reference": json.loads(props.get(REFERENCE_KEY, "null")),
            "info": json.loads(props.get(INFO_KEY, "{}")),
            "parameters": json.loads(props.get(PARAMETERS_KEY, "null")),
        }
    except (ValueError, TypeError) as exc:
        raise IIPAError(f"{path}: malformed iipa metadata ({exc})") from None


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`parse_onnx_metadata` of an ONNX file, read without onnx or onnxruntime."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            props = _metadata_props(buf)
    except FileNotFoundError:
        raise IIPAError(f"{path}: no such ONNX file") from None
    except (ValueError, IndexError, UnicodeDecodeError) as exc:  # empty file, truncated or not protobuf
        raise IIPAError(f"{path}: not a readable ONNX file ({exc.__class__.__name__}: {exc})") from None
    return parse_onnx_metadata(props, path)


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: Any, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = (pos, pos + size), pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf")
        yield number, wire, value


def _metadata_props(buf: Any) -> dict[str, str]:
    props = {}
    for number, wire, span in _fields(buf, 0, len(buf)):
        if number != _METADATA_PROPS or wire != 2:
            continue
        entry = {n: bytes(buf[s:e]).decode("utf-8") for n, w, (s, e) in
                 ((n, w, v) for n, w, v in _fields(buf, *span) if w == 2)}
        props[entry.get(_KEY, "")] = entry.get(_VALUE, "")
    return props
