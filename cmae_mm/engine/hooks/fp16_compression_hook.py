"""fp16 gradient compression for distributed detection training (ViTDet recipe).

MMEngine 0.10.7's ``MMDistributedDataParallel`` / ``model_wrapper_cfg`` has no option
for DDP communication hooks, so this hook registers PyTorch's
``fp16_compress_hook`` on the wrapped model before training: gradients are cast to
fp16 for the all-reduce (half the traffic) and back to fp32 afterwards. In a
non-distributed run there is no all-reduce, and the hook does nothing. Registered in
MMEngine's root registry: any framework's config can name it in ``custom_hooks``.
"""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel


@HOOKS.register_module()
class Fp16CompressionHook(Hook):
    """Register ``fp16_compress_hook`` on the DDP-wrapped model when distributed."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        if not runner.distributed:
            print_log(
                'Fp16CompressionHook: not distributed, no gradient all-reduce '
                'to compress.',
                logger='current')
            return
        model = runner.model
        if not isinstance(model, DistributedDataParallel):
            raise TypeError(
                f'Fp16CompressionHook needs a DistributedDataParallel-wrapped model '
                f'(MMEngine\'s default MMDistributedDataParallel), got '
                f'{type(model).__name__}; remove the hook from `custom_hooks` for '
                f'other wrappers.')
        model.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
        print_log(
            'Fp16CompressionHook: gradients are all-reduced in fp16.', logger='current')
