# Runtime shared by the cmae_mm pretraining configs: MMPretrain's default runtime,
# owned here because inheriting `mmpretrain::` bases breaks collate_fn (SPEC §4).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the latest 3 checkpoints (as MMPretrain's MAE / MoCo v3 configs)
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # NCCL on GPUs; tools/train.py switches to gloo when there is no GPU
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
# released recipes: fixed seed, a different seed per rank (SPEC §1)
randomness = dict(seed=0, diff_rank_seed=True)
