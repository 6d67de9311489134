"""Neural-network modules (a PyTorch-like ``torch.nn``)."""

from . import functional, init, utils
from .activation import GELU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .attention import MultiheadAttention
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .conv import Conv2d
from .dropout import Dropout, Flatten
from .linear import Identity, Linear
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, BatchNormBase, GroupNorm, LayerNorm, RMSNorm
from .parameter import Parameter
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .rnn import GRU, LSTM, RNN, RNNBase
from .sparse import Embedding

__all__ = [
    "functional", "init", "utils",
    "Module", "Parameter", "Sequential", "ModuleList",
    "Linear", "Identity", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout", "Flatten", "Embedding",
    "ReLU", "GELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss",
    "SmoothL1Loss",
]
__all__ += ["ModuleDict", "ParameterList", "ParameterDict", "GroupNorm", "RMSNorm", "SiLU",
            "RNNBase", "RNN", "LSTM", "GRU", "MultiheadAttention", "BatchNormBase"]
