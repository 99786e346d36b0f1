"""The model layer: what a model *is*, apart from how it runs.

:mod:`~iipa.model.record` (one :class:`~iipa.model.record.ModelRecord` per model, from a name, a
file or a network), :mod:`~iipa.model.weights` and :mod:`~iipa.model.weights_store` (named
weights and their files), :mod:`~iipa.model.checkpoint` (the ``.pt`` format),
:mod:`~iipa.model.onnx_format`, :mod:`~iipa.model.export` and :mod:`~iipa.model.quantize` (the
ONNX files). It imports the backbones (:mod:`iipa.backbones`) and the input layer, never the
backends (:mod:`iipa.backends`) or anything above them. Nothing is imported here, so that
``import iipa.model.weights`` stays free of torch.
"""
