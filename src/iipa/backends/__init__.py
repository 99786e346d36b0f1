"""The backends that run a model for :mod:`iipa.scoring`: :mod:`~iipa.backends.onnxrt`
(onnxruntime), :mod:`~iipa.backends.pytorch` (PyTorch), the rule that picks one
(:mod:`~iipa.backends.choose`) and the device, precision and thread facts they share
(:mod:`~iipa.backends.device`). Nothing is imported here, so that choosing a backend does not
import torch or onnxruntime.
"""
