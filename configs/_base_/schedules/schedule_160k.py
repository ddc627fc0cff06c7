# 160k iterations, validation and checkpoints every 16k: MMSegmentation 1.2.2's
# configs/_base_/schedules/schedule_160k.py, inherited. Its SGD optimizer and poly
# schedule are replaced by the recipe configs (optim_wrapper with `_delete_=True`).
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'
max_iters = 160000
default_hooks = dict(
    # written atomically (docs/reliability.md)
    checkpoint=dict(type='SafeCheckpointHook'),
    # stop before a non-finite loss updates the weights (docs/reliability.md)
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='stop'),
)
