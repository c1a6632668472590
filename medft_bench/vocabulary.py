"""The names the engine and the leaderboard share: the metrics, the primary-metric rule, the multi-label task's
name, the tiers' order, the MedMNIST datasets' modalities, the reference's gradient-probe budget.

Plain data at the bottom of the package's layers (docs/architecture.md): it imports nothing of medft_bench's and
nothing heavy (no torch, no scikit-learn), so that the leaderboard, which reads records and never the engine, runs
where only its own dependencies are installed; ``metrics.py``, ``gates.py``, ``data/`` and the leaderboard read it.
"""

from __future__ import annotations

# MedMNIST's name of the multi-label task (ChestMNIST): a label per finding, each binary.
MULTI_LABEL = "multi-label, binary-class"

METRIC_NAMES = {"acc": "accuracy", "auc": "AUC", "balanced_acc": "balanced accuracy", "f1_macro": "macro F1",
                "map": "mAP"}
METRICS = tuple(METRIC_NAMES)

# The study's modality for each flag (MedMNIST's own descriptions are long prose).
MODALITY = {
    "pathmnist": "histology", "chestmnist": "x-ray", "dermamnist": "dermoscopy", "octmnist": "oct",
    "pneumoniamnist": "x-ray", "retinamnist": "fundus", "breastmnist": "ultrasound",
    "bloodmnist": "microscopy", "tissuemnist": "microscopy", "organamnist": "ct", "organcmnist": "ct",
    "organsmnist": "ct",
}


# The tier name of every cell on the user's own data (a --folder-dataset): whatever tier's settings it ran with,
# it is real data of the user's, never the synthetic smoke tier's (the CLI's default) nor another tier's.
OWN_TIER = "own"

# Words (hyphens dropped) in a dataset's name or path that say its modality: --folder-dataset infers one from them
# when modality= is not given
MODALITY_WORDS = {
    "x-ray": ("xray", "cxr", "radiograph", "chest", "pneumonia", "mammo", "mammography"),
    "ct": ("ct", "tomography"),
    "mri": ("mri", "mr"),
    "ultrasound": ("ultrasound", "us", "sonography", "echo", "busi"),
    "dermoscopy": ("derm", "dermoscopy", "skin", "melanoma", "isic", "ham10000"),
    "histology": ("histology", "histo", "pathology", "slide", "wsi", "crc"),
    "endoscopy": ("endoscopy", "endo", "colonoscopy", "polyp", "kvasir"),
    "fundus": ("fundus", "retina", "retinal"),
    "oct": ("oct",),
}

# The metric the leaderboard ranks strategies by, for every task: medmnist's AUC. It does not depend on where a
# decision threshold falls; balanced accuracy at the argmax does, and on imbalanced data trained with unweighted
# cross-entropy it ranks operating points (docs/leaderboard.md, "The ranking metric"). Shown beside it: balanced
# accuracy. The study's claims keep the study's metric, macro (balanced) accuracy: CLAIMS_METRIC.
RANKING_METRIC = "auc"
CLAIMS_METRIC = "balanced_acc"

# The study's eight strategies, in the study's order: what the real tier runs, what the leaderboard's claims
# compare and the order its tables list them in (then anything else alphabetically).
STUDY_STRATEGIES = ("ft", "lp", "gu_first_last", "gu_last_first", "lp_ft", "l1_sp", "l2_sp", "auto_rgn")


def primary_metric(task: str) -> str:
    """The metric a dataset is ranked by: AUC for multi-label (ACC is ~0.95 for all-negative), else
    balanced accuracy."""
    return "auc" if task == MULTI_LABEL else "balanced_acc"


# The tiers in the order ``tiers.TIERS`` defines them (tiers.py refuses to load when the two differ): the
# leaderboard sorts its groups by it without importing the suite.
TIER_ORDER = ("real", "real_long", "smoke", "quick", "standard", "full")


def tier_order() -> tuple[str, ...]:
    """The tiers in the order ``tiers.TIERS`` defines them: the leaderboard sorts its groups by it."""
    return TIER_ORDER


# Batches whose gradients Auto-RGN and Auto-SNR measure at each epoch's start in their reference
# (anniesch/surgical-finetuning); fewer is a budget cut that the record states (strategy.incomplete_reason, also
# written by results/upgrade.py into records older than that field).
REFERENCE_PROBE_BATCHES = 5


def probe_cut(n_batches: int) -> str | None:
    """Why a gradient probe on ``n_batches`` is not the reference's, or None when it measures as many."""
    if n_batches >= REFERENCE_PROBE_BATCHES:
        return None
    return f"gradient probe on {n_batches} batches, the reference's {REFERENCE_PROBE_BATCHES}"
