# Each module below registers itself on import; keep one import line per file.
from .feature_decoder import CMAEFeatureDecoder  # noqa: F401
from .token_nonlinear_neck import TokenNonLinearNeck  # noqa: F401
