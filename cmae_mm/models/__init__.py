"""MMPretrain modules: algorithms, backbones, necks, heads and losses."""
from . import algorithms, backbones, heads, losses, necks  # noqa: F401
