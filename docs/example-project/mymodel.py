"""A team's own model, as frontier-bench sees it: a factory returning a torch module.

The factory may take ``input_shape``, ``num_classes``, ``mean`` and ``std``
(the dataset fills them in); the module takes images in [0, 1] and returns
logits, one per class.
"""

from torch import nn


def make(*, input_shape, num_classes, width: int = 16):
    channels, height, width_px = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(width * (height // 2) * (width_px // 2), 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
