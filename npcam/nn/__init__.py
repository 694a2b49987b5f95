"""The hand-derived network — what a student reads first: ``functional`` (forward/backward
pairs), ``_conv`` (the fast convolution engine), ``layers``, ``trace`` (Trace, VJP and the
model protocol), ``sequential``, ``fold`` (BatchNorm folding), ``config`` and ``io`` (the
``.npz`` reader/writer)."""

from __future__ import annotations

from .config import layer_from_config, model_from_config
from .fold import fold_batchnorm
from .io import ARCHITECTURE_KEY, load_model, load_weights, save_model
from .layers import BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Layer, Linear, MaxPool2d, ReLU
from .sequential import IncompatibleKeys, Sequential
from .trace import RELU_RULES, VJP, Model, Trace

__all__ = [
    "ARCHITECTURE_KEY",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2d",
    "IncompatibleKeys",
    "Layer",
    "Linear",
    "MaxPool2d",
    "Model",
    "RELU_RULES",
    "ReLU",
    "Sequential",
    "Trace",
    "VJP",
    "fold_batchnorm",
    "layer_from_config",
    "load_model",
    "load_weights",
    "model_from_config",
    "save_model",
]
