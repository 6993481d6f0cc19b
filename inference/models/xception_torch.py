"""A Keras functional CNN (the FER2013 Xceptions) converted to a plain torch `nn.Module`.

Why: calling the Keras 3 model on the torch backend costs ~10 ms of Python/Keras overhead per
call and runs every BatchNormalization as its own op, so one-image calls were slow and batches
barely faster. The converted module runs the same arithmetic with plain `torch.nn.functional`
calls under `inference_mode`:

- Conv2D -> conv2d; SeparableConv2D -> depthwise conv2d (groups = in channels) + 1x1 conv2d;
- BatchNormalization (inference: moving statistics) folded into the preceding convolution's
  weights and bias when that convolution feeds only it (else a per-channel affine);
- ReLU activations fused into the convolution node before them when it feeds only them;
- Keras `padding="same"` reproduced exactly (TensorFlow puts the odd pixel at the bottom/right;
  max pooling pads with -inf), `"valid"` = no padding;
- Add, GlobalAveragePooling2D, softmax.

Folding changes float32 rounding only (max abs softmax difference <= 2e-6 on real faces, tested
against the Keras graph in tests/test_xception_torch.py). Any other layer raises
`UnsupportedLayerError` naming it, so a new architecture never runs half-converted.
Tensors are NCHW; a (n, h, w, 1) Keras batch is the same memory as (n, 1, h, w).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class UnsupportedLayerError(ValueError):
    """The Keras model has a layer (or layer setting) this converter does not translate."""


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'same' padding of one spatial dim: (before, after); the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TFConv2d(nn.Module):
    """conv2d with Keras padding semantics, optional fused bias and ReLU."""

    def __init__(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        stride: tuple[int, int],
        padding: str,
        groups: int = 1,
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(weight, np.float32)), requires_grad=False)
        b = None if bias is None else torch.from_numpy(np.ascontiguousarray(bias, np.float32))
        self.bias = None if b is None else nn.Parameter(b, requires_grad=False)
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), int(groups)
        self.same = padding == "same"
        self.relu = False  # set when a following ReLU is fused in

    def fold_affine(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """y -> scale * y + shift per output channel, folded into weight and bias (in float64)."""
        w = self.weight.detach().double().numpy() * scale[:, None, None, None]
        b = (self.bias.detach().double().numpy() if self.bias is not None else 0.0) * scale + shift
        self.weight = nn.Parameter(torch.from_numpy(w.astype(np.float32)), requires_grad=False)
        self.bias = nn.Parameter(torch.from_numpy(np.asarray(b, np.float32)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding: Any = 0
        if self.same:
            kh, kw = self.weight.shape[2:]
            top, bottom = _same_padding(x.shape[2], kh, self.stride[0], self.dilation[0])
            left, right = _same_padding(x.shape[3], kw, self.stride[1], self.dilation[1])
            if top == bottom and left == right:
                padding = (top, left)  # symmetric: let the convolution pad (no copy)
            else:
                x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return F.relu(y) if self.relu else y


class TFSeparableConv2d(nn.Module):
    """Keras SeparableConv2D: depthwise (groups = channels) then pointwise 1x1."""

    def __init__(self, depthwise: TFConv2d, pointwise: TFConv2d) -> None:
        super().__init__()
        self.depthwise, self.pointwise = depthwise, pointwise

    @property
    def relu(self) -> bool:
        return self.pointwise.relu

    @relu.setter
    def relu(self, value: bool) -> None:
        self.pointwise.relu = value

    def fold_affine(self, scale: np.ndarray, shift: np.ndarray) -> None:
        self.pointwise.fold_affine(scale, shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class TFMaxPool2d(nn.Module):
    """max pooling with Keras padding semantics ('same' pads with -inf, i.e. ignores the border)."""

    def __init__(self, pool: tuple[int, int], stride: tuple[int, int], padding: str) -> None:
        super().__init__()
        self.pool, self.stride, self.same = tuple(pool), tuple(stride), padding == "same"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return F.max_pool2d(x, self.pool, self.stride)
        top, bottom = _same_padding(x.shape[2], self.pool[0], self.stride[0])
        left, right = _same_padding(x.shape[3], self.pool[1], self.stride[1])
        if top == bottom and left == right:
            return F.max_pool2d(x, self.pool, self.stride, padding=(top, left))
        return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=-math.inf), self.pool, self.stride)


class ChannelAffine(nn.Module):
    """A BatchNormalization that could not be folded: per-channel scale and shift (NCHW)."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.from_numpy(shift.astype(np.float32)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x * self.scale.view(1, -1) + self.shift.view(1, -1)
        return x * self.scale + self.shift


class Relu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class Softmax(nn.Module):
    """Keras softmax over the last NHWC axis = the channel axis (dim 1) of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(x, dim=1)


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class AddAll(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class GraphModule(nn.Module):
    """Runs converted nodes in Keras' topological order; node = (output name, module, input names)."""

    def __init__(self, nodes: list[tuple[str, nn.Module, tuple[str, ...]]], input_name: str, output_name: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(module for _, module, _ in nodes)
        self.plan = [(name, inputs) for name, _, inputs in nodes]
        self.input_name, self.output_name = input_name, output_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for module, (name, inputs) in zip(self.layers, self.plan):
            values[name] = module(*[values[i] for i in inputs])
        return values[self.output_name]


# ----------------------------------------------------------------------------- conversion

_FOLDABLE = (TFConv2d, TFSeparableConv2d)


def _weights(variable: Any) -> np.ndarray:
    """A Keras variable as float64 numpy (folding is done in double precision)."""
    value = getattr(variable, "value", variable)
    if isinstance(value, torch.Tensor):  # torch backend: read the tensor, not Keras' __array__ shim
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _history(args: Any) -> list[str]:
    """Names of the layers whose outputs feed a layer, from its serialised inbound node."""
    if isinstance(args, dict):
        history = args.get("config", {}).get("keras_history") if args.get("class_name") == "__keras_tensor__" else None
        if history:
            return [str(history[0])]
        return [n for v in args.values() for n in _history(v)]
    if isinstance(args, (list, tuple)):
        return [n for v in args for n in _history(v)]
    return []


def _endpoints(spec: list[Any]) -> list[str]:
    """Layer names of a config's input/output list: [[name, 0, 0], ...], or one flat [name, 0, 0]."""
    return [str(spec[0])] if spec and isinstance(spec[0], str) else [str(s[0]) for s in spec]


def _check_channels_last(name: str, cfg: dict[str, Any]) -> None:
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedLayerError(f"layer {name}: data_format {cfg['data_format']!r} (only channels_last)")


def _conv(layer: Any, cfg: dict[str, Any]) -> TFConv2d:
    kernel = _weights(layer.kernel)  # (kh, kw, in / groups, out)
    bias = _weights(layer.bias) if cfg.get("use_bias") else None
    return TFConv2d(kernel.transpose(3, 2, 0, 1), bias, cfg["strides"], cfg["padding"],
                    groups=int(cfg.get("groups", 1)), dilation=cfg.get("dilation_rate", (1, 1)))


def _separable(layer: Any, cfg: dict[str, Any]) -> TFSeparableConv2d:
    depth = _weights(layer.depthwise_kernel)  # (kh, kw, in, multiplier)
    kh, kw, channels, mult = depth.shape
    # Keras orders depthwise outputs channel-major (c * mult + m), as torch's grouped conv does
    depthwise = TFConv2d(depth.reshape(kh, kw, channels * mult).transpose(2, 0, 1)[:, None], None,
                         cfg["strides"], cfg["padding"], groups=channels, dilation=cfg.get("dilation_rate", (1, 1)))
    point = _weights(layer.pointwise_kernel)  # (1, 1, in * multiplier, out)
    bias = _weights(layer.bias) if cfg.get("use_bias") else None
    return TFSeparableConv2d(depthwise, TFConv2d(point.transpose(3, 2, 0, 1), bias, (1, 1), "valid"))


def _batch_norm(layer: Any, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode BatchNormalization as y = scale * x + shift per channel."""
    axis = cfg.get("axis", -1)
    if (axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis) not in (-1, 3):
        raise UnsupportedLayerError(f"layer {layer.name}: BatchNormalization over axis {axis} (only channels)")
    mean, var = _weights(layer.moving_mean), _weights(layer.moving_variance)
    gamma = _weights(layer.gamma) if cfg.get("scale", True) else np.ones_like(mean)
    beta = _weights(layer.beta) if cfg.get("center", True) else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + float(cfg["epsilon"]))
    return scale, beta - mean * scale


def _activation_name(name: str, cfg: dict[str, Any], class_name: str) -> str:
    if class_name == "ReLU":
        if any(cfg.get(k) not in (None, 0, 0.0) for k in ("max_value", "negative_slope", "threshold")):
            raise UnsupportedLayerError(f"layer {name}: ReLU with max_value/negative_slope/threshold")
        return "relu"
    activation = cfg.get("activation", "linear")
    return activation if isinstance(activation, str) else str(activation)


def keras_to_torch(model: Any) -> GraphModule:
    """Convert a single-input, single-output Keras functional CNN (NHWC) into a `GraphModule` (NCHW)."""
    config = model.get_config()
    ends = [_endpoints(config["input_layers"]), _endpoints(config["output_layers"])]
    if len(ends[0]) != 1 or len(ends[1]) != 1:
        raise UnsupportedLayerError("only single-input, single-output models are converted")
    layers = config["layers"]
    consumers: dict[str, int] = {}
    for entry in layers:
        for source in _history(entry.get("inbound_nodes", [])):
            consumers[source] = consumers.get(source, 0) + 1
    nodes: list[tuple[str, nn.Module, tuple[str, ...]]] = []
    by_value: dict[str, nn.Module] = {}
    alias: dict[str, str] = {}  # Keras layer name -> name of the node computing its value
    input_name = ends[0][0]
    for entry in layers:
        name, class_name, cfg = entry["name"], entry["class_name"], entry.get("config", {})
        if class_name == "InputLayer":
            continue
        if len(entry.get("inbound_nodes", [])) != 1:
            raise UnsupportedLayerError(f"layer {name}: shared layers (several inbound nodes) are not converted")
        sources = _history(entry["inbound_nodes"])
        inputs = tuple(alias.get(s, s) for s in sources)
        # the single producer of this layer's input, when only this layer reads it: fusable
        producer = by_value.get(inputs[0]) if len(inputs) == 1 and consumers.get(sources[0]) == 1 else None
        layer = model.get_layer(name)
        _check_channels_last(name, cfg)
        module: nn.Module
        if class_name in ("Conv2D", "SeparableConv2D"):
            module = _conv(layer, cfg) if class_name == "Conv2D" else _separable(layer, cfg)
            activation = _activation_name(name, cfg, class_name)
            if activation not in ("linear", "relu"):
                raise UnsupportedLayerError(f"layer {name}: activation {activation!r}")
            module.relu = activation == "relu"  # type: ignore[assignment]
        elif class_name == "BatchNormalization":
            scale, shift = _batch_norm(layer, cfg)
            if isinstance(producer, _FOLDABLE) and not producer.relu:
                producer.fold_affine(scale, shift)
                alias[name] = inputs[0]
                continue
            module = ChannelAffine(scale, shift)
        elif class_name in ("Activation", "ReLU"):
            activation = _activation_name(name, cfg, class_name)
            if activation == "linear":
                alias[name] = inputs[0]
                continue
            if activation == "relu" and isinstance(producer, _FOLDABLE) and not producer.relu:
                producer.relu = True  # type: ignore[assignment]
                alias[name] = inputs[0]
                continue
            if activation not in ("relu", "softmax"):
                raise UnsupportedLayerError(f"layer {name}: activation {activation!r}")
            module = Relu() if activation == "relu" else Softmax()
        elif class_name == "MaxPooling2D":
            module = TFMaxPool2d(cfg["pool_size"], cfg.get("strides") or cfg["pool_size"], cfg["padding"])
        elif class_name == "Add":
            module = AddAll()
        elif class_name == "GlobalAveragePooling2D":
            if cfg.get("keepdims"):
                raise UnsupportedLayerError(f"layer {name}: GlobalAveragePooling2D with keepdims")
            module = GlobalAvgPool()
        else:
            raise UnsupportedLayerError(f"layer {name}: {class_name} is not converted to torch")
        nodes.append((name, module, inputs))
        by_value[name] = module
    output = ends[1][0]
    return GraphModule(nodes, input_name, alias.get(output, output)).eval()
