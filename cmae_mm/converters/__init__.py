"""Key conversions between the official releases' checkpoints and cmae_mm's layout
(used by ``tools/model_converters``). Nothing here registers a module."""
