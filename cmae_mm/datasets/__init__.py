"""MMPretrain data transforms."""
from . import transforms  # noqa: F401
