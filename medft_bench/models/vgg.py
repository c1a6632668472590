"""VGG-19 as the study built it: torchvision's architecture with a timm-style interface.

timm's ``vgg19`` runs the classifier as 7x7 and 1x1 convolutions (``ConvMlp``), which was 2.6x slower than
torchvision's three Linear layers at 32 px on a 2-core CPU, and its parameter names differ from the
torchvision checkpoints the study used. Wrapping torchvision's module keeps the study's exact architecture,
speed and checkpoint keys (``features.*``, ``classifier.*``), and adds the few methods the engine uses.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import vgg19 as tv_vgg19


class TorchvisionVGG(nn.Module):
    """torchvision VGG with ``forward_features``, ``forward_head`` and ``get_classifier`` like timm."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        base = tv_vgg19(weights=None)
        self.features, self.avgpool, self.classifier = base.features, base.avgpool, base.classifier
        self.num_classes = num_classes
        if num_classes != 1000:
            self.reset_classifier(num_classes)

    def get_classifier(self) -> nn.Module:
        return self.classifier[6]

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[6] = nn.Linear(self.classifier[6].in_features, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        x = self.classifier[:6](x)
        return x if pre_logits else self.classifier[6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
