"""medft-bench: which fine-tuning strategy for which backbone and medical imaging modality, at what cost."""

__version__ = "0.1.0"
