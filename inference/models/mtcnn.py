"""MTCNN face detection (Zhang et al. 2016), ported from facenet-pytorch without depending on it.

Ported from timesler/facenet-pytorch (MIT licence, (c) 2019 Timothy Esler):
`models/mtcnn.py` (PNet, RNet, ONet: same layer names, so its state dicts load strictly) and
`models/utils/detect_face.py` (the three-stage cascade). facenet-pytorch pins an old torch, so
the project keeps these ~200 lines instead of the dependency.

Weights: `pnet.pt`, `rnet.pt`, `onet.pt` (state dicts) from the facenet-pytorch wheel's
`facenet_pytorch/data/` folder, in a local directory (`MTCNN_DOWNLOAD` says how to get them).

Differences from facenet-pytorch, all deliberate: one image per call (no batch); landmarks are
not computed; a box whose padded crop is empty is dropped together with its score (the
original keeps the score list and drops only the crop, misaligning the two).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate
from torchvision.ops import nms

WEIGHT_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
FACENET_PYTORCH_VERSION = "2.6.0"  # the wheel whose data/*.pt the instructions name
MTCNN_DOWNLOAD = (
    "pip download facenet-pytorch=={version} --no-deps -d /tmp/facenet && "
    "unzip -j /tmp/facenet/facenet_pytorch-{version}-*.whl 'facenet_pytorch/data/*.pt' -d {folder}"
)
Box = tuple[int, int, int, int]  # x, y, w, h


class MtcnnWeightsError(FileNotFoundError):
    """The MTCNN weight files are missing or do not fit the networks; the message says the fix."""


class PNet(nn.Module):
    """Proposal net: 12x12 windows -> face score and box regression, fully convolutional."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """Refinement net: 24x24 crops -> face score and box regression."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()  # the weights were converted from Caffe's layout
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output net: 48x48 crops -> face score, box regression and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


@dataclass
class MtcnnNets:
    pnet: PNet
    rnet: RNet
    onet: ONet
    weights_sha256: str | None  # None: random-initialised (tests)

    @classmethod
    def random(cls, seed: int = 0) -> MtcnnNets:
        """Random-initialised nets of the real architecture (tests; no weights needed)."""
        with torch.random.fork_rng():  # leave the caller's random state as it was
            torch.manual_seed(seed)
            return cls(PNet().eval(), RNet().eval(), ONet().eval(), None)


def load_mtcnn(folder: Path, where: str = "preprocessing.mtcnn.weights") -> MtcnnNets:
    """The three nets with the state dicts of `folder` (strictly: every key and shape must fit).
    Errors name the missing file and the exact commands that fetch it."""
    from inference.models.fer_baselines import weights_digest

    folder = Path(folder)
    files = [folder / name for name in WEIGHT_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise MtcnnWeightsError(
            f"{where}: {folder} lacks the MTCNN weights {', '.join(missing)}. They ship in the "
            f"facenet-pytorch wheel (MIT licence): "
            f"{MTCNN_DOWNLOAD.format(version=FACENET_PYTORCH_VERSION, folder=folder)} ; or point "
            f"{where} at a folder holding {', '.join(WEIGHT_FILES)}")
    nets: list[nn.Module] = [PNet(), RNet(), ONet()]
    for net, path in zip(nets, files):
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        except Exception as exc:  # unpickling / key / shape errors all mean "not this file"
            raise MtcnnWeightsError(
                f"{where}: {path} is not facenet-pytorch's {path.name} state dict ({type(exc).__name__}: "
                f"{str(exc)[:300]}); re-extract it: "
                f"{MTCNN_DOWNLOAD.format(version=FACENET_PYTORCH_VERSION, folder=folder)}") from None
        net.eval()
    return MtcnnNets(*nets, weights_sha256=weights_digest(files))  # type: ignore[arg-type]


class MtcnnDetector:
    """The MTCNN cascade over one RGB image; faces largest first (facenet-pytorch's
    `select_largest=True`). Defaults are facenet-pytorch's."""

    name = "mtcnn"

    def __init__(self, nets: MtcnnNets, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), factor: float = 0.709) -> None:
        self.nets = nets
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "port_of": f"facenet-pytorch {FACENET_PYTORCH_VERSION}",
                "weights_sha256": self.nets.weights_sha256, "min_face_size": self.min_face_size,
                "thresholds": list(self.thresholds), "factor": self.factor, "selection": "largest"}

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """All faces of an RGB uint8 (h, w, 3) image as (x, y, w, h) clipped to it, largest first."""
        boxes, _ = self.detect_scored(rgb)
        height, width = rgb.shape[:2]
        out = []
        for x1, y1, x2, y2 in boxes.tolist():
            left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
            right, bottom = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
            if right > left and bottom > top:
                out.append((left, top, right - left, bottom - top))
        out.sort(key=lambda b: (-b[2] * b[3], b[1], b[0]))
        return out

    def detect_scored(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (n, 4: x1 y1 x2 y2, unclipped floats) and face probabilities (n,)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"MTCNN needs an RGB (h, w, 3) image, got shape {rgb.shape}")
        with torch.inference_mode():
            img = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
            boxes = self._proposals(img)
            if len(boxes):
                boxes = self._refine(img, boxes, self.nets.rnet, 24, self.thresholds[1], "union")
            if len(boxes):
                boxes = self._refine(img, boxes, self.nets.onet, 48, self.thresholds[2], "min")
        return boxes[:, :4].numpy().astype(np.float64), boxes[:, 4].numpy().astype(np.float64)

    def _scales(self, height: int, width: int) -> list[float]:
        m = 12.0 / self.min_face_size
        side, scale, scales = min(height, width) * m, m, []
        while side >= 12:
            scales.append(scale)
            scale, side = scale * self.factor, side * self.factor
        return scales

    def _proposals(self, img: torch.Tensor) -> torch.Tensor:
        """Stage 1: PNet over the scale pyramid; rows x1 y1 x2 y2 score (squared boxes)."""
        height, width = img.shape[2:]
        found = [torch.zeros(0, 9)]
        for scale in self._scales(height, width):
            data = _normalise(_resample(img, (int(height * scale + 1), int(width * scale + 1))))
            reg, probs = self.nets.pnet(data)
            boxes = _windows(reg, probs[:, 1], scale, self.thresholds[0])
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        reg_w, reg_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * reg_w, boxes[:, 1] + boxes[:, 6] * reg_h,
                             boxes[:, 2] + boxes[:, 7] * reg_w, boxes[:, 3] + boxes[:, 8] * reg_h,
                             boxes[:, 4]], dim=1)
        return _square(boxes)

    def _refine(self, img: torch.Tensor, boxes: torch.Tensor, net: nn.Module, size: int,
                threshold: float, overlap: str) -> torch.Tensor:
        """Stages 2 (RNet, 24 px) and 3 (ONet, 48 px): rescore crops, regress, suppress."""
        height, width = img.shape[2:]
        boxes, crops = _crops(img, boxes, width, height, size)
        if not len(boxes):
            return boxes
        out = net(_normalise(crops))
        reg, score = out[0], out[-1][:, 1]
        keep = score > threshold
        boxes = torch.cat([boxes[keep, :4], score[keep, None]], dim=1)
        reg = reg[keep]
        if overlap == "union":
            pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
            return _square(_regress(boxes[pick], reg[pick]))
        boxes = _regress(boxes, reg)
        return boxes[_nms_min(boxes, 0.7)]


def _resample(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return interpolate(img, size=size, mode="area")


def _normalise(data: torch.Tensor) -> torch.Tensor:
    return (data - 127.5) * 0.0078125


def _windows(reg: torch.Tensor, probs: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """PNet's 12 px windows (stride 2) scoring >= threshold, in image coordinates: rows x1 y1 x2 y2
    score dx1 dy1 dx2 dy2 (facenet-pytorch's generateBoundingBox)."""
    stride, cell = 2, 12
    mask = probs >= threshold
    where = mask.nonzero()
    score = probs[mask]
    offsets = reg.permute(1, 0, 2, 3)[:, mask].permute(1, 0)
    xy = where[:, 1:].to(reg.dtype).flip(1)
    top_left = ((stride * xy + 1) / scale).floor()
    bottom_right = ((stride * xy + cell) / scale).floor()
    return torch.cat([top_left, bottom_right, score.unsqueeze(1), offsets], dim=1)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box grown to a square around its centre (rerec)."""
    boxes = boxes.clone()
    h, w = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side.unsqueeze(1)
    return boxes


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply the nets' box regression (bbreg)."""
    boxes = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = boxes[:, :4] + reg[:, :4] * torch.stack([w, h, w, h], dim=1)
    return boxes


def _crops(img: torch.Tensor, boxes: torch.Tensor, width: int, height: int,
           size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The boxes whose crop (1-based, clipped to the image as in facenet-pytorch's `pad`) is not
    empty, and those crops resampled to size x size."""
    ints = boxes[:, :4].trunc().int().numpy()
    x, y = np.maximum(ints[:, 0], 1), np.maximum(ints[:, 1], 1)
    ex, ey = np.minimum(ints[:, 2], width), np.minimum(ints[:, 3], height)
    keep = [k for k in range(len(boxes)) if ey[k] > y[k] - 1 and ex[k] > x[k] - 1]
    if not keep:
        return boxes[:0], torch.zeros(0, 3, size, size)
    crops = [_resample(img[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], (size, size)) for k in keep]
    return boxes[keep], torch.cat(crops)


def _nms_min(boxes: torch.Tensor, threshold: float) -> torch.Tensor:
    """Non-maximum suppression with overlap = intersection / smaller area (facenet-pytorch's
    'Min' method for the last stage; torchvision has only intersection over union)."""
    x1, y1, x2, y2, scores = (boxes[:, i].numpy() for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")
    pick: list[int] = []
    while order.size:
        best, rest = order[-1], order[:-1]
        pick.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        overlap = w * h / np.minimum(area[best], area[rest])
        order = rest[overlap <= threshold]
    return torch.as_tensor(pick, dtype=torch.long)
