"""Reference models for digits/MNIST-size images (N x C x H x W, any small H x W).

Every model takes the same constructor arguments -- ``in_channels``,
``image_size`` (an int or an (H, W) pair), ``n_classes`` and ``widths`` -- and
exposes two attributes for analysis with :func:`deepspan.extract`.
The :class:`MLP` flattens its input, so it also takes vectors (N x L, e.g. 1-D
signals; ``in_features=L``); every other model convolves over H x W, which its
class attribute ``needs_image = True`` states (:func:`needs_image` reads it by
name, :func:`image_only_reason` words it for reports).

* ``feature_layer``: the dotted module name whose output is "the feature" in
  the papers deepspan implements -- the penultimate ReLU of a classifier (Liu et
  al. 2022, P-vectors; Nam et al. 2024, the feature map), the latent code of an
  autoencoder, the backbone output of a SimCLR model (Chen et al. 2020);
* ``block_layers``: the module names for layer-wise analysis (Wang et al. 2018
  compare layers one by one), in forward order.

Activations are explicit ``nn.ReLU`` module instances (never ``F.relu``), each
used once per forward pass, so forward hooks capture post-activations.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "VGGStyle", "ResNetStyle", "ResidualBlock", "ConvAutoencoder", "SimCLR", "MODELS",
           "needs_image", "image_only_reason"]


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def _down(n: int) -> int:
    """Spatial size after a 3x3 conv with stride 2 and padding 1 (or a 2x2 ceil-mode max pool)."""
    return (n + 1) // 2


class MLP(nn.Module):
    """Fully connected ReLU network: flatten -> [fc_k -> relu_k] * len(widths) -> classifier.

    Layers are named ``fc1, relu1, fc2, relu2, ..., classifier``; the feature
    layer is the last ReLU (the penultimate layer). Inputs are images (C x H x W,
    ``in_channels * H * W`` values each) or, with ``in_features=L``, vectors (N x L);
    either way they are flattened first.
    """

    needs_image = False

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 8, n_classes: int = 10,
                 widths: Sequence[int] = (256, 128), in_features: int | None = None) -> None:
        super().__init__()
        if not widths:
            raise ValueError("MLP needs at least one hidden width.")
        self.flatten = nn.Flatten()
        if in_features is not None:
            d = int(in_features)
        else:
            h, w = _hw(image_size)
            d = in_channels * h * w
        self.in_features = d
        self.block_layers: list[str] = []
        for k, width in enumerate(widths, start=1):
            self.add_module(f"fc{k}", nn.Linear(d, width))
            self.add_module(f"relu{k}", nn.ReLU())
            self.block_layers.append(f"relu{k}")
            d = width
        self.classifier = nn.Linear(d, n_classes)
        self.depth = len(widths)
        self.feature_layer = self.block_layers[-1]
        self.feature_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for k in range(1, self.depth + 1):
            x = getattr(self, f"relu{k}")(getattr(self, f"fc{k}")(x))
        return self.classifier(x)


class SmallCNN(nn.Module):
    """Two conv blocks (3x3 conv, ReLU, 2x2 max pool) -> fc -> ReLU -> classifier.

    ``widths = (c1, c2, hidden)``. Names: ``conv1 relu1 pool1 conv2 relu2 pool2
    fc relu3 classifier``; feature layer ``relu3`` (penultimate).
    """

    needs_image = True

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 8, n_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 128)) -> None:
        super().__init__()
        c1, c2, hidden = widths
        h, w = _hw(image_size)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, ceil_mode=True)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, ceil_mode=True)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c2 * _down(_down(h)) * _down(_down(w)), hidden)
        self.relu3 = nn.ReLU()
        self.classifier = nn.Linear(hidden, n_classes)
        self.feature_layer = "relu3"
        self.block_layers = ["relu1", "relu2", "relu3"]
        self.feature_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.classifier(self.relu3(self.fc(self.flatten(x))))


class VGGStyle(nn.Module):
    """A plain VGG-style net (Simonyan & Zisserman 2015; the CIFAR VGG family of Wang et al. 2018's code):
    3x3 conv + ReLU layers with 2x2 max pools, then two fully connected ReLU layers and a classifier.

    ``widths = (c_1, ..., c_k, hidden)`` gives k >= 2 conv layers; a max pool follows conv layers 1
    and 2 and the last one (so a 28 x 28 input is read at 14, 7 and 4 pixels), keeping the cost of a
    deep stack near that of :class:`SmallCNN`. Names: ``conv<i> relu<i>`` for the conv layers, then
    ``fc1 relu<k+1> fc2 relu<k+2> classifier``; ``block_layers`` are every ReLU (the post-activations
    Wang et al. compare: every conv layer and fc1/fc2, not the logits); the feature layer is the
    last ReLU (penultimate).
    """

    needs_image = True

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 8, n_classes: int = 10,
                 widths: Sequence[int] = (8, 16, 32, 32, 128)) -> None:
        super().__init__()
        if len(widths) < 3:
            raise ValueError("VGGStyle needs at least two conv widths and a hidden width.")
        *convs, hidden = (int(w) for w in widths)
        h, w = _hw(image_size)
        c = in_channels
        self.block_layers: list[str] = []
        self._pool_after = {1, 2, len(convs)}
        for i, width in enumerate(convs, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(c, width, 3, padding=1))
            self.add_module(f"relu{i}", nn.ReLU())
            self.block_layers.append(f"relu{i}")
            if i in self._pool_after:
                self.add_module(f"pool{i}", nn.MaxPool2d(2, ceil_mode=True))
                h, w = _down(h), _down(w)
            c = width
        self.n_conv = len(convs)
        self.flatten = nn.Flatten()
        k = len(convs)
        self.fc1 = nn.Linear(c * h * w, hidden)
        self.add_module(f"relu{k + 1}", nn.ReLU())
        self.fc2 = nn.Linear(hidden, hidden)
        self.add_module(f"relu{k + 2}", nn.ReLU())
        self.classifier = nn.Linear(hidden, n_classes)
        self.block_layers += [f"relu{k + 1}", f"relu{k + 2}"]
        self.feature_layer = f"relu{k + 2}"
        self.feature_dim = hidden
        # He et al. 2015 initialisation (fan-out for convs, as torchvision's VGG): a plain stack this deep
        # barely moves in its first epoch under PyTorch's default (smaller) initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_conv + 1):
            x = getattr(self, f"relu{i}")(getattr(self, f"conv{i}")(x))
            if i in self._pool_after:
                x = getattr(self, f"pool{i}")(x)
        k = self.n_conv
        x = getattr(self, f"relu{k + 1}")(self.fc1(self.flatten(x)))
        x = getattr(self, f"relu{k + 2}")(self.fc2(x))
        return self.classifier(x)


class ResidualBlock(nn.Module):
    """Basic residual block of He et al. 2016: relu(bn(conv(relu(bn(conv x)))) + shortcut(x)).

    The shortcut is the identity, or a strided 1x1 conv + BN when the shape
    changes. The block's output (its ``out_relu``) is the post-activation
    feature of the block.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                                     nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()
        self.out_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.out_relu(y + self.shortcut(x))


class ResNetStyle(nn.Module):
    """A small ResNet (He et al. 2016): stem conv -> residual blocks -> global average pool -> classifier.

    ``widths`` gives one residual block per entry; the first keeps the
    resolution, each later one halves it (stride 2). ``blocks`` is a
    ``ModuleList``; ``block_layers`` are ``stem_relu, blocks.0, blocks.1, ...``
    (each block's post-activation output). The feature layer is ``pool``:
    the global average of the last block's ReLU output (N x widths[-1]), the
    penultimate layer as in ResNets. ``stem_stride=2`` halves the resolution in the stem (as the
    strided stems of ImageNet ResNets do), which makes a 28 x 28 input about four times cheaper.
    """

    needs_image = True

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 8, n_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64), stem_stride: int = 1) -> None:
        super().__init__()
        if not widths:
            raise ValueError("ResNetStyle needs at least one block width.")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}.")
        self.stem = nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        self.stem_relu = nn.ReLU()
        blocks = []
        c = widths[0]
        for k, width in enumerate(widths):
            blocks.append(ResidualBlock(c, width, stride=1 if k == 0 else 2))
            c = width
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.Sequential(OrderedDict(gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))
        self.classifier = nn.Linear(c, n_classes)
        self.feature_layer = "pool"
        self.block_layers = ["stem_relu"] + [f"blocks.{k}" for k in range(len(widths))]
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.pool(x))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder: encoder -> latent vector -> decoder; the latent is the feature.

    Encoder ``enc_conv1 (stride 2) enc_relu1 enc_conv2 (stride 2) enc_relu2
    flatten latent`` (a linear map to ``latent_dim``); decoder ``dec_fc dec_relu1
    dec_up1 dec_conv1 dec_relu2 dec_up2 dec_conv2 dec_out`` (sigmoid output,
    inputs in [0, 1]). Upsampling goes to the exact encoder sizes, so any image
    size works. ``n_classes`` is accepted for a uniform constructor and unused.
    """

    needs_image = True

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 8, n_classes: int = 10,
                 widths: Sequence[int] = (16, 32), latent_dim: int = 32) -> None:
        super().__init__()
        c1, c2 = widths
        h, w = _hw(image_size)
        h1, w1 = _down(h), _down(w)
        h2, w2 = _down(h1), _down(w1)
        self.enc_conv1 = nn.Conv2d(in_channels, c1, 3, stride=2, padding=1)
        self.enc_relu1 = nn.ReLU()
        self.enc_conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.enc_relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.latent = nn.Linear(c2 * h2 * w2, latent_dim)
        self.dec_fc = nn.Linear(latent_dim, c2 * h2 * w2)
        self.dec_relu1 = nn.ReLU()
        self.unflatten = nn.Unflatten(1, (c2, h2, w2))
        self.dec_up1 = nn.Upsample(size=(h1, w1), mode="nearest")
        self.dec_conv1 = nn.Conv2d(c2, c1, 3, padding=1)
        self.dec_relu2 = nn.ReLU()
        self.dec_up2 = nn.Upsample(size=(h, w), mode="nearest")
        self.dec_conv2 = nn.Conv2d(c1, in_channels, 3, padding=1)
        self.dec_out = nn.Sigmoid()
        self.feature_layer = "latent"
        self.block_layers = ["enc_relu1", "enc_relu2", "latent", "dec_relu1", "dec_relu2"]
        self.feature_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = self.enc_relu2(self.enc_conv2(self.enc_relu1(self.enc_conv1(x))))
        return self.latent(self.flatten(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.dec_up1(self.unflatten(self.dec_relu1(self.dec_fc(z))))
        x = self.dec_up2(self.dec_relu2(self.dec_conv1(x)))
        return self.dec_out(self.dec_conv2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class SimCLR(nn.Module):
    """SimCLR-style model (Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020, arXiv 2002.05709): encoder backbone + projection head.

    ``backbone`` = ``conv1 relu1 conv2 (stride 2) relu2 conv3 (stride 2) relu3
    pool flatten`` (global average pool: N x widths[-1]); ``head`` = ``fc1 relu
    fc2`` to ``proj_dim``. ``forward`` returns the projection z used by the
    NT-Xent loss; the representation (the feature) is the backbone output, as
    in the paper, where the head is discarded after training. ``n_classes`` is
    accepted for a uniform constructor and unused. ``stem_stride=2`` makes conv1 strided (about
    four times cheaper on 28 x 28 inputs).
    """

    needs_image = True

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 8, n_classes: int = 10,
                 widths: Sequence[int] = (32, 64, 128), proj_dim: int = 64, stem_stride: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = widths
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride}.")
        self.backbone = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, c1, 3, stride=stem_stride, padding=1), relu1=nn.ReLU(),
            conv2=nn.Conv2d(c1, c2, 3, stride=2, padding=1), relu2=nn.ReLU(),
            conv3=nn.Conv2d(c2, c3, 3, stride=2, padding=1), relu3=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
        ))
        self.head = nn.Sequential(OrderedDict(fc1=nn.Linear(c3, c3), relu=nn.ReLU(), fc2=nn.Linear(c3, proj_dim)))
        self.feature_layer = "backbone"
        self.block_layers = ["backbone.relu1", "backbone.relu2", "backbone.relu3", "backbone", "head.relu"]
        self.feature_dim = c3

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


MODELS = {"mlp": MLP, "cnn": SmallCNN, "vgg": VGGStyle, "resnet": ResNetStyle, "autoencoder": ConvAutoencoder, "simclr": SimCLR}


def needs_image(kind: str) -> bool:
    """Whether the zoo model ``kind`` (a key of :data:`MODELS`) needs images (N x C x H x W) rather than vectors."""
    return bool(getattr(MODELS[kind], "needs_image", True))


def image_only_reason(kind: str, input_shape: Sequence[int]) -> str | None:
    """Why zoo model ``kind`` cannot run on samples of ``input_shape`` (None when it can): vectors (one axis)
    reach only the models that flatten their input."""
    if len(tuple(input_shape)) != 1 or not needs_image(kind):
        return None
    length = int(tuple(input_shape)[0])
    return f"{MODELS[kind].__name__} needs images (N x C x H x W); the data are vectors of length {length}"
