"""The hand-derived network — what a student reads first: ``functional`` (forward/backward
pairs, the smooth and clipped activations and LayerNorm included),
``_conv`` (the fast convolution engine), ``layers``, ``activations``, ``ops`` (graph ops:
Add, Concat, Mul, Split, Reshape, ...), ``trace`` (Trace, VJP and the model protocol),
``sequential`` (a chain), ``graph`` (a DAG), ``fold`` (BatchNorm folding), ``config`` and
``io`` (the ``.npz`` reader/writer)."""

from __future__ import annotations

from .activations import GELU, Hardsigmoid, Hardswish, LayerNorm, ReLU6, Sigmoid, SiLU
from .config import layer_from_config, model_from_config
from .fold import fold_batchnorm
from .graph import Graph, Node
from .io import ARCHITECTURE_KEY, load_model, load_weights, save_model
from .layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    Linear,
    MaxPool2d,
    ReLU,
)
from .ops import (
    Add,
    AddConstant,
    Chunk,
    Concat,
    Identity,
    Index,
    Mean,
    Mul,
    MulConstant,
    Parameter,
    Permute,
    Reshape,
    Split,
    Transpose,
    Unsqueeze,
    View,
)
from .sequential import IncompatibleKeys, Sequential
from .trace import RELU_RULES, VJP, Model, Trace

__all__ = [
    "ARCHITECTURE_KEY",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "Add",
    "AddConstant",
    "Chunk",
    "Concat",
    "GELU",
    "Graph",
    "Hardsigmoid",
    "Hardswish",
    "Identity",
    "Index",
    "LayerNorm",
    "Mean",
    "Mul",
    "MulConstant",
    "Node",
    "Parameter",
    "Permute",
    "ReLU6",
    "Reshape",
    "SiLU",
    "Sigmoid",
    "Split",
    "Transpose",
    "Unsqueeze",
    "View",
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
