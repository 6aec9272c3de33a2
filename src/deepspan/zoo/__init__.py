"""Reference models and a seeded, resumable trainer (supervised, autoencoder, SimCLR).

>>> from deepspan.zoo import SmallCNN, train
>>> model = SmallCNN(in_channels=1, image_size=8, n_classes=10)
>>> result = train(model, load_digits(), "supervised", epochs=3, out_dir="runs/cnn")
>>> series = deepspan.CheckpointSeries.from_manifest("runs/cnn", lambda: SmallCNN(1, 8, 10))
>>> deepspan.extract(model, X, model.feature_layer)

Models expose ``feature_layer`` and ``block_layers`` (module names for
:func:`deepspan.extract`). See :mod:`deepspan.zoo.train` for the checkpoint
layout and :mod:`deepspan.zoo.augment` for the augmentations.
"""

from deepspan.zoo.augment import Augment, gaussian_noise, random_affine, random_translate
from deepspan.zoo.models import MLP, MODELS, ConvAutoencoder, ResidualBlock, ResNetStyle, SimCLR, SmallCNN, VGGStyle
from deepspan.zoo.train import PARADIGMS, TrainResult, linear_probe, nt_xent, read_manifest, train

__all__ = [
    "MLP", "SmallCNN", "VGGStyle", "ResNetStyle", "ResidualBlock", "ConvAutoencoder", "SimCLR", "MODELS",
    "Augment", "random_translate", "random_affine", "gaussian_noise",
    "train", "TrainResult", "read_manifest", "nt_xent", "linear_probe", "PARADIGMS",
]
