"""Datasets: MedMNIST files, synthetic MedMNIST-format data, folder datasets, and batch preprocessing."""

from medft_bench.data.arrays import DataBundle, Split, load_npz
from medft_bench.data.sources import load_dataset

__all__ = ["DataBundle", "Split", "load_npz", "load_dataset"]
