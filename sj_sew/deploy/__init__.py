"""From a trained net to where it runs: BatchNorm folding, the inference model, streaming and export.

- :mod:`.fold` -- :func:`fold_conv_bn`, :func:`fused_conv`, :func:`fold_batchnorm`.
- :mod:`.inference` -- :class:`InferenceModel`, :func:`inference_model`, :class:`ChannelsLastMaxPool2d`.
- :mod:`.streaming` -- :class:`StreamingModel`, :func:`streaming` (one time step per call).
- :mod:`.export` -- :func:`graph_model`, :func:`export_torchscript`, :func:`export_onnx` (fixed T).
- :mod:`.nir_export` -- :func:`to_nir`, :func:`from_nir`, :func:`from_nir_spikingjelly`, :func:`run_nir`,
  :func:`max_pool_to_avg` (NIR graphs).
"""
from .export import GraphModel, UnrolledNeuron, export_onnx, export_torchscript, graph_model
from .fold import fold_batchnorm, fold_conv_bn, fused_conv
from .inference import ChannelsLastMaxPool2d, InferenceModel, inference_model
from .nir_export import from_nir, from_nir_spikingjelly, max_pool_to_avg, run_nir, to_nir
from .streaming import StreamingModel, streaming

__all__ = ["fold_conv_bn", "fused_conv", "fold_batchnorm", "ChannelsLastMaxPool2d", "InferenceModel",
           "inference_model", "StreamingModel", "streaming", "GraphModel", "UnrolledNeuron", "graph_model",
           "export_torchscript", "export_onnx", "to_nir", "from_nir", "from_nir_spikingjelly", "run_nir",
           "max_pool_to_avg"]
