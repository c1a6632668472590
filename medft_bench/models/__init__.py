"""Backbones by name: ``create_backbone`` over timm plus a few registered builders."""

from medft_bench.models.factory import Backbone, backbone_names, create_backbone, register_backbone

__all__ = ["Backbone", "backbone_names", "create_backbone", "register_backbone"]
