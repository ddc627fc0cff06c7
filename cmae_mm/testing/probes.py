"""A hook that records what each rank trains on, for the multi-process tests.

Import it with ``custom_imports = dict(imports=['cmae_mm', 'cmae_mm.testing.probes'])``
and ``custom_hooks = [dict(type='RankProbeHook')]``. After every training iteration
each rank appends one JSON line to ``WORK_DIR/probe_rank{rank}.jsonl``:
``iter``, ``epoch``, the rank's own losses (``float.hex``, exact), SHA-1 digests of
the batch's inputs, of the pipeline masks in its data samples (ConMIM) and of the
masks the backbone drew (CMAE, seen by a forward hook), the samples' indices, and a
digest of the backbone's parameters after the step.
"""
import hashlib
import json
import os.path as osp
from typing import Any, List, Optional

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def digest(tensors: List[torch.Tensor]) -> str:
    """SHA-1 of the tensors' bytes (in order)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Records each rank's batches, masks, losses and weights (see the module doc).

    Args:
        nan_rank (int, optional): Rank on which to make the backbone's output NaN
            (a forward hook), for ``nan_iter``. Defaults to None (no injection).
        nan_iter (int): 1-based iteration of the injection. Defaults to 1.
    """

    priority = 'LOWEST'

    def __init__(self, nan_rank: Optional[int] = None, nan_iter: int = 1) -> None:
        self.nan_rank, self.nan_iter = nan_rank, nan_iter
        self.masks: List[torch.Tensor] = []

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.backbone = model.backbone
        self.backbone.register_forward_hook(self._observe)
        self.path = osp.join(runner.work_dir, f'probe_rank{get_rank()}.jsonl')
        self.iter = runner.iter

    def _observe(self, module, args, output: Any) -> Any:
        if isinstance(output, tuple) and len(output) == 3:  # CMAEViT: latent, mask, ids
            self.masks.append(output[1])
        if get_rank() == self.nan_rank and self.iter + 1 == self.nan_iter:
            if isinstance(output, tuple):
                return (output[0] * float('nan'), ) + tuple(output[1:])
            return output * float('nan')
        return output

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.iter = runner.iter
        self.masks = []

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        inputs = data_batch['inputs']
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        inputs = [t for x in inputs for t in (x if isinstance(x, list) else [x])]
        samples = data_batch.get('data_samples') or []
        data_masks = [s.mask for s in samples if 'mask' in s]
        record = dict(
            iter=runner.iter + 1,
            epoch=runner.epoch,
            losses={
                k: float(v).hex()
                for k, v in (outputs or {}).items() if k.startswith('loss')
            },
            inputs=digest(inputs),
            data_masks=digest(data_masks) if data_masks else None,
            model_masks=digest(self.masks) if self.masks else None,
            sample_idx=[int(s.sample_idx) for s in samples if 'sample_idx' in s],
            sample_masks=[digest([m]) for m in data_masks],
            weights=digest(list(self.backbone.parameters())))
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')
