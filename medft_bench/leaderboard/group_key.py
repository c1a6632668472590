"""What a group is: the key results are never averaged across (tier, data, weights, image size, protocol), its
label, caveat and slug, the tier page's file name, and the order groups are shown in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from medft_bench.leaderboard.load import Run
from medft_bench.results.view import WEIGHTS_KINDS
from medft_bench.vocabulary import OWN_TIER, tier_order


def tier_sort_key(tier: str) -> tuple[int, str]:
    """The tiers' order in ``tiers.py``; a tier it does not define (a record's own) after them, by name."""
    order = tier_order()
    return (order.index(tier), tier) if tier in order else (len(order), tier)


# The tuned protocol first: equal tuning is the answer's protocol; the study's fixed rate is a group of its own.
PROTOCOL_ORDER = ("tuned", "study")
PROTOCOL_LABELS = {"study": "study protocol (one fixed learning rate)",
                   "tuned": "TUNED protocol (each strategy at its best learning rate on validation)"}


@dataclass(frozen=True)
class GroupKey:
    tier: str
    synthetic: bool
    weights: str  # pretrained | random | file
    img_size: int
    protocol: str = "study"  # study | tuned
    input_size: int = 0  # the size the images were shown at, when one was asked for (--input-size)
    unofficial: bool = False  # a MedMNIST file whose MD5 is not the official one (Run.unofficial)

    def sort_key(self) -> tuple[Any, ...]:
        w = WEIGHTS_KINDS.index(self.weights) if self.weights in WEIGHTS_KINDS else len(WEIGHTS_KINDS)
        p = PROTOCOL_ORDER.index(self.protocol) if self.protocol in PROTOCOL_ORDER else len(PROTOCOL_ORDER)
        return (tier_sort_key(self.tier), self.synthetic, self.unofficial, w, self.img_size, self.input_size, p,
                self.protocol)

    @property
    def slug(self) -> str:
        data = "synthetic" if self.synthetic else "unofficial" if self.unofficial else "real"
        protocol = "" if self.protocol == "study" else f"-{_slug(self.protocol)}"  # study slugs stay as they were
        shown = f"-at{self.input_size}" if self.input_size else ""  # slugs without an input size stay as they were
        return f"{_slug(self.tier)}-{self.img_size}px{shown}-{data}-{self.weights}{protocol}"

    @property
    def setting(self) -> tuple[str, bool, str, int, int, bool]:
        """Everything but the protocol: groups of one setting under two protocols are compared by survival()."""
        return (self.tier, self.synthetic, self.weights, self.img_size, self.input_size, self.unofficial)

    @property
    def caveat(self) -> str | None:
        """Why these numbers are no measure of real transfer, or None."""
        if self.unofficial:
            return ("an UNOFFICIAL copy of the MedMNIST file (its MD5 is not the official one): not the dataset the "
                    "published numbers are about")
        if self.synthetic and self.weights == "random":
            return "not a measure of real transfer"
        if self.synthetic:
            return "synthetic images: not a measure of real performance"
        if self.weights == "random":
            return "no pretraining: not a measure of transfer"
        return None

    def _label(self, protocol: bool) -> str:
        data = "SYNTHETIC data" if self.synthetic else "real data (UNOFFICIAL file)" if self.unofficial else "real data"
        weights = {"pretrained": "pretrained weights", "packaged": "pretrained weights (packaged)",
                   "random": "RANDOM weights",
                   "file": "weights from a local FILE"}.get(self.weights, self.weights)
        # Every group names its protocol (the study's fixed rate is a group of its own beside the tuned answer),
        # before the dash, so that the caveat stays next to the data and weights it is about.
        shown = ", " + PROTOCOL_LABELS.get(self.protocol, f"{self.protocol} protocol") if protocol else ""
        size = f"{self.img_size} px shown at {self.input_size} px" if self.input_size else f"{self.img_size} px"
        where = "own data" if self.tier == OWN_TIER else f"{self.tier} tier"  # --folder-dataset: the user's data
        text = f"{where}, {size}{shown} — {data}, {weights}"
        return f"{text}: {self.caveat}" if self.caveat else text

    @property
    def label(self) -> str:
        return self._label(True)

    @property
    def setting_label(self) -> str:
        """The label without the protocol (for tables that compare the two)."""
        return self._label(False)


def _slug(text: str) -> str:
    """A file-name-safe stem of ``text``, lower case (one page on a case-insensitive disk too); two texts
    never share one: a text that had to change ("My tier", "Smoke") gets a short hash of itself appended."""
    slug = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in text.lower()).strip(".")
    return slug if slug == text else _tagged(slug or "tier", text)


def _tagged(stem: str, text: str) -> str:
    """``stem`` made ``text``'s own: a short hash of ``text`` appended."""
    return f"{stem}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


RESERVED_PAGES = ("readme", "index", "references", "summary")


def tier_slug(tier: str) -> str:
    """The tier page's file stem (never one of the index's or references' names)."""
    slug = _slug(tier)
    if slug.lower() in RESERVED_PAGES:  # a hash, not a prefix: "tier-readme" is a tier name too
        return _tagged(slug, tier)
    return slug


def group_key(run: Run) -> GroupKey:
    return GroupKey(run.tier, run.synthetic, run.weights_kind, run.img_size, run.protocol, run.input_size,
                    run.unofficial)
