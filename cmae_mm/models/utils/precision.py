"""Float32 regions inside mixed-precision (autocast) training."""
from contextlib import contextmanager

import torch


@contextmanager
def autocast_disabled(device: torch.device):
    """Autocast off for ``device``'s type, so that float32 inputs give float32
    results. Used for the contrastive losses: autocast computes ``einsum`` / ``bmm``
    (the logits) in bfloat16 on CPUs, float16 on GPUs, even from float32 inputs."""
    with torch.autocast(device_type=torch.device(device).type, enabled=False):
        yield
