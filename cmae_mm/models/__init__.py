"""Pretraining models (MMPretrain registries): the algorithms, their parts and the
device-side augmentation of their data preprocessors."""
from . import algorithms  # noqa: F401
from . import backbones  # noqa: F401
from . import data_preprocessors  # noqa: F401
from . import losses  # noqa: F401
from . import necks  # noqa: F401
from . import utils  # noqa: F401
