"""Data loading: datasets, samplers, the DataLoader, transforms and the offline datasets."""

from . import transforms
from .collate import default_collate
from .dataloader import DataLoader
from .dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from .datasets import (
    cache_path,
    data_dir,
    fashion_mnist,
    fetch,
    fetch_command,
    is_available,
    mnist,
    read_idx,
)
from .rng import sample_generator
from .sampler import DistributedSampler, RandomSampler, Sampler, SequentialSampler
from .synthetic import synthetic_classification, synthetic_mnist
from .text import CharTokenizer, fetch_shakespeare, shakespeare, shakespeare_path
from .worker import WorkerInfo, get_worker_info

DATASETS = ("mnist", "fashion-mnist", "synthetic")


def load(name: str, split: str = "train"):
    """``(images, labels)`` of a dataset by name: "mnist", "fashion-mnist" or "synthetic"."""
    if name == "mnist":
        return mnist(split)
    if name == "fashion-mnist":
        return fashion_mnist(split)
    if name == "synthetic":
        return synthetic_mnist(split)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


__all__ = [
    "Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split",
    "DataLoader", "default_collate", "get_worker_info", "WorkerInfo", "sample_generator",
    "transforms", "Sampler", "SequentialSampler", "RandomSampler", "DistributedSampler",
    "mnist", "fashion_mnist", "fetch", "fetch_command", "is_available", "cache_path",
    "data_dir", "read_idx", "synthetic_classification", "synthetic_mnist", "load", "DATASETS",
    "shakespeare", "fetch_shakespeare", "shakespeare_path", "CharTokenizer",
]
