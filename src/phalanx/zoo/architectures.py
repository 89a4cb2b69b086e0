"""Network architectures of the reference models: plain ``nn.Module`` classes, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from phalanx._optional import require

if TYPE_CHECKING:
    import torch
    from torch import nn
else:
    torch = require("torch", extra="ml", purpose="the model zoo")
    nn = torch.nn


class MLP(nn.Module):
    """A fully connected ReLU network; flattens its input first.

    Args:
        in_features: Values in one (flattened) input.
        num_classes: Number of output classes.
        hidden: Widths of the hidden layers.

    Shapes:
        x: ``(batch, *any)`` with ``in_features`` values per sample; out: ``(batch, num_classes)``.
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int] = (128, 64)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks (conv, ReLU, 2x2 max-pool) and two fully connected layers.

    The usual small network of adversarial-robustness papers on MNIST-sized images, narrowed
    so that it trains in well under a minute on two CPU cores.

    Args:
        in_channels: Channels of the input image.
        num_classes: Number of output classes.
        width: Channels of the first conv layer; the second has twice as many.
        image_size: Height (= width) of the input image; a multiple of 4.
        hidden: Width of the first fully connected layer.

    Shapes:
        x: ``(batch, in_channels, image_size, image_size)``; out: ``(batch, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 16,
        image_size: int = 28,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, image_size, image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out
