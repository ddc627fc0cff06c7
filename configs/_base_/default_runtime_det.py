# MMDetection runtime (iteration-based, as ViTDet's schedule): MMDetection 3.3.0's
# configs/_base_/default_runtime.py, inherited (no collate_fn in it, so the `_scope_`
# that cross-package inheritance adds does no harm, docs/software_stack.md), plus
# cmae_mm's modules, hooks and run checks.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
# cmae_mm's Runner (work-dir lock, checked resume, weights-only loading, set-up
# checks; docs/reliability.md) under any launcher: tools/train.py, `mim train`, ...
runner_type = 'CheckedRunner'

default_hooks = dict(
    checkpoint=dict(
        type='SafeCheckpointHook',
        by_epoch=False,
        interval=5000,
        save_last=True,
        max_keep_ckpts=5),
    # stop before a non-finite loss updates the weights (docs/reliability.md)
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='stop'),
    # SIGTERM / SIGUSR1: save a checkpoint after the iteration, exit 124
    # (docs/training.md, Slurm)
    preemption=dict(type='PreemptionHook'))
# ViTDet: fp16 compression of the gradient all-reduce (distributed runs only;
# docs/recipes.md)
custom_hooks = [dict(type='Fp16CompressionHook')]
log_processor = dict(by_epoch=False)
