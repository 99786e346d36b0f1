"""Constants that the command-line parsers show or check, in a module that imports nothing.

`iipa --help` builds every sub-command's parser; the library modules these values belong
to import numpy, PIL, torch or http.client, so each value lives here, once, and those
modules import it from here (``iipa.images.CROPS`` and the like still work; the input limits live in the numpy-free
:mod:`iipa.inputpolicy`).
tests/test_cli_contract.py checks that no parser pulls a heavy module in.
"""

from __future__ import annotations

# The model every entry point uses when none is named (`iipa score`, `resolve_model()`, ...).
DEFAULT_MODEL = "instagram-lite0"
# Views per image a profile can give: the centre crop; corners + centre; the same mirrored.
CROPS = (1, 5, 10)
# How a profile decodes: the exact image, or JPEG draft mode (a cheaper, smaller decode).
DECODES = ("exact", "draft")
# The splits of a pairs table.
SPLITS = ("train", "val", "test")
# `iipa experiment`'s defaults: Table 2's label-noise levels, Table 3's backbones.
NOISE_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4)
ARCHITECTURES = ("alexnet", "vgg16", "resnet50", "resnet101", "efficientnet_lite0")
# Precision, backend and --optimize choices (the rules: iipa.backends.device, iipa.backends.choose).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
RUNTIMES = ("auto", "torch", "onnx")  # --runtime: see iipa.backends.choose.choose_runtime
OPTIMIZE = ("none", "jit", "compile")  # --optimize (PyTorch backend)
