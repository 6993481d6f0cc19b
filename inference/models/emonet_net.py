"""The EmoNet network (Toisoul, Kossaifi, Bulat, Tzimiropoulos & Pantic, "Estimation of continuous
valence and arousal levels from faces in naturalistic conditions", Nature Machine Intelligence
3, 42-50, 2021), written here from the paper's description; the official code is CC BY-NC-ND
4.0 and is not used or copied.

The paper's model: a face-alignment network (FAN: a stem and two stacked hourglasses of
Bulat & Tzimiropoulos's multi-scale residual blocks, giving 68 landmark heatmaps at 64 x 64 for
a 256 x 256 face) whose features feed an emotion branch. The summed heatmaps of the last stack
act as a spatial attention mask on the hourglass features; the stem's features and the masked
features of every stack are concatenated, reduced by a 1 x 1 convolution, passed through four
(block, 2x max-pool) stages down to 4 x 4, averaged, and a small MLP gives the class logits
followed by valence and arousal (in [-1, 1]).

Module names and tensor shapes mirror the published state dicts (`emonet_5.pth`,
`emonet_8.pth`), so those files load strictly into this module: the names (`m0`, `top_m_0`,
`b2_plus_1`, `emo_net_2`, ...) are the file's keys, not our choice. All normalisation layers
are BatchNorm (the published weights carry running statistics for every one of them).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FEATURES = 256  # width of the FAN features and of the emotion branch
LANDMARKS = 68
HOURGLASS_DEPTH = 4
INPUT_SIZE = 256  # the published models' input: a 256 x 256 face crop, RGB in [0, 1]


def _conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's residual block: three pre-activated (BN, ReLU) 3x3 convolutions in a chain giving
    cout/2, cout/4 and cout/4 channels, concatenated (a multi-scale receptive field), plus the
    input -- through BN, ReLU and a 1x1 convolution when the widths differ."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3x3(cin, half)
        self.bn2, self.conv2 = nn.BatchNorm2d(half), _conv3x3(half, quarter)
        self.bn3, self.conv3 = nn.BatchNorm2d(quarter), _conv3x3(quarter, quarter)
        self.downsample = None if cin == cout else nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chain, h = [], x
        for bn, conv in ((self.bn1, self.conv1), (self.bn2, self.conv2), (self.bn3, self.conv3)):
            h = conv(F.relu(bn(h)))
            chain.append(h)
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat(chain, dim=1) + shortcut


class Hourglass(nn.Module):
    """A recursive hourglass of `depth` levels. At level L: `b1_L` keeps the current resolution;
    `b2_L` works after a 2x max-pool, then level L-1 (at level 1 the bottleneck `b2_plus_1`),
    then `b3_L`; the result is upsampled (nearest) and added to `b1_L`'s."""

    def __init__(self, depth: int = HOURGLASS_DEPTH, width: int = FEATURES) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            for branch in ("b1", "b2", "b3"):
                self.add_module(f"{branch}_{level}", ConvBlock(width, width))
        self.b2_plus_1 = ConvBlock(width, width)

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        same = self.get_submodule(f"b1_{level}")(x)
        low = self.get_submodule(f"b2_{level}")(F.max_pool2d(x, 2))
        low = self._level(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = self.get_submodule(f"b3_{level}")(low)
        return same + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class EmoNet(nn.Module):
    """`forward(x)` with x of shape (N, 3, 256, 256), RGB in [0, 1] -> (N, n_classes + 2): the
    class logits, then valence, then arousal."""

    def __init__(self, n_classes: int = 8, stacks: int = 2, emotion_stages: int = 4) -> None:
        super().__init__()
        self.n_classes, self.stacks = n_classes, stacks
        # FAN stem: 7x7 stride-2 convolution, one 2x max-pool -> FEATURES channels at 1/4 size
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURES)
        for i in range(stacks):
            self.add_module(f"m{i}", Hourglass())
            self.add_module(f"top_m_{i}", ConvBlock(FEATURES, FEATURES))
            self.add_module(f"conv_last{i}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(FEATURES))
            self.add_module(f"l{i}", nn.Conv2d(FEATURES, LANDMARKS, kernel_size=1))  # heatmaps
            if i < stacks - 1:  # what the next stack receives besides its input
                self.add_module(f"bl{i}", nn.Conv2d(FEATURES, FEATURES, kernel_size=1))
                self.add_module(f"al{i}", nn.Conv2d(LANDMARKS, FEATURES, kernel_size=1))
        # emotion branch: the stem's and every stack's features, reduced to FEATURES channels
        self.conv1x1_input_emo_2 = nn.Conv2d(FEATURES * (stacks + 1), FEATURES, kernel_size=1)
        stages: list[nn.Module] = []
        for _ in range(emotion_stages):
            stages += [ConvBlock(FEATURES, FEATURES), nn.MaxPool2d(2)]
        self.emo_net_2 = nn.Sequential(*stages)
        self.emo_fc_2 = nn.Sequential(nn.Linear(FEATURES, 128), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                      nn.Linear(128, n_classes + 2))

    def _stacks(self, stem: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each stack's features and the last stack's heatmaps."""
        features, x, heatmaps = [], stem, stem
        for i in range(self.stacks):
            h = self.get_submodule(f"top_m_{i}")(self.get_submodule(f"m{i}")(x))
            h = F.relu(self.get_submodule(f"bn_end{i}")(self.get_submodule(f"conv_last{i}")(h)))
            heatmaps = self.get_submodule(f"l{i}")(h)
            if i < self.stacks - 1:
                # the projected features are both this stack's contribution and part of the next input
                h = self.get_submodule(f"bl{i}")(h)
                x = x + h + self.get_submodule(f"al{i}")(heatmaps)
            features.append(h)
        return features, heatmaps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        stem = self.conv4(self.conv3(F.max_pool2d(self.conv2(x), 2)))
        features, heatmaps = self._stacks(stem)
        attention = heatmaps.sum(dim=1, keepdim=True)  # where the landmarks are
        emotion = torch.cat([stem, torch.cat(features, dim=1) * attention], dim=1)
        emotion = self.emo_net_2(self.conv1x1_input_emo_2(emotion))
        pooled = F.adaptive_avg_pool2d(emotion, 1).flatten(1)  # 4 x 4 at a 256 px input
        return self.emo_fc_2(pooled)
