"""From a trained net to where it runs: BatchNorm folding and the inference model.

- :mod:`.fold` -- :func:`fold_conv_bn`, :func:`fused_conv`, :func:`fold_batchnorm`.
- :mod:`.inference` -- :class:`InferenceModel`, :func:`inference_model`, :class:`ChannelsLastMaxPool2d`.
"""
from .fold import fold_batchnorm, fold_conv_bn, fused_conv
from .inference import ChannelsLastMaxPool2d, InferenceModel, inference_model

__all__ = ["fold_conv_bn", "fused_conv", "fold_batchnorm", "ChannelsLastMaxPool2d", "InferenceModel",
           "inference_model"]
