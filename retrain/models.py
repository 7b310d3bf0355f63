"""The built-in PyTorch modules behind the built-in specs."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPClassifier"]


class MLPClassifier(nn.Module):
    """A multi-layer perceptron: `layers` hidden layers of `hidden` units (ReLU), logits out."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 64, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if n_features < 1 or n_classes < 2 or hidden < 1 or layers < 1 or not 0 <= dropout < 1:
            raise ValueError(f"MLPClassifier needs n_features >= 1, n_classes >= 2, hidden >= 1, layers >= 1 and "
                             f"0 <= dropout < 1; got {n_features}, {n_classes}, {hidden}, {layers}, {dropout}")
        self.n_features, self.n_classes, self.hidden = n_features, n_classes, hidden
        blocks: list[nn.Module] = []
        width = n_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout:
                blocks.append(nn.Dropout(dropout))
            width = hidden
        blocks.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
