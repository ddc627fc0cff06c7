# 160k iterations, validation and checkpoints every 16k: MMSegmentation 1.2.2's
# configs/_base_/schedules/schedule_160k.py (the optimizer and lr schedule are set by
# the recipe configs).
max_iters = 160000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'),
    # stop before a non-finite loss updates the weights; checkpoints above are
    # written atomically (docs/reliability.md)
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='stop'),
)
