"""Engine parts shared by the downstream frameworks."""
from . import layer_decay_optim_wrapper_constructor  # noqa: F401
