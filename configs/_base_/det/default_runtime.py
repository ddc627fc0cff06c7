# MMDetection runtime (iteration-based, as ViTDet's schedule), owned here
# (docs/software_stack.md).
default_scope = 'mmdet'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='SafeCheckpointHook',
        by_epoch=False,
        interval=5000,
        save_last=True,
        max_keep_ckpts=5),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # stop before a non-finite loss updates the weights (docs/reliability.md)
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='stop'),
    # SIGTERM / SIGUSR1: save a checkpoint after the iteration, exit 124
    # (docs/training.md, Slurm)
    preemption=dict(type='PreemptionHook'))
# ViTDet: fp16 compression of the gradient all-reduce (distributed runs only;
# docs/recipes.md)
custom_hooks = [dict(type='Fp16CompressionHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False
