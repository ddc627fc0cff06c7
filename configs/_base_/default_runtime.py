# MMPretrain runtime of every cmae_mm pretraining and classification config: MMPretrain
# 1.2.0's configs/_base_/default_runtime.py, owned here rather than inherited with
# `_base_ = 'mmpretrain::...'`, which injects `_scope_` into collate_fn and breaks
# default_collate (docs/software_stack.md).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the latest 3 checkpoints (as MMPretrain's MAE / MoCo v3 configs), written
    # atomically, old ones removed only after the new one is complete
    checkpoint=dict(type='SafeCheckpointHook', interval=1, max_keep_ckpts=3),
    # stop before a non-finite loss updates the weights; never save non-finite
    # weights (action='skip' to skip such iterations; docs/reliability.md)
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='stop'),
    # bad images skipped by SafeLoadImageFromFile are listed in bad_images.txt
    data_fault=dict(type='DataFaultHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # SIGTERM (Slurm preemption / time limit) or SIGUSR1 (`--signal=USR1@120`):
    # finish the iteration, save a checkpoint, exit 124 (docs/training.md, Slurm)
    preemption=dict(type='PreemptionHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # NCCL on GPUs; tools/train.py switches to gloo when there is no GPU
    dist_cfg=dict(backend='nccl'),
)

# Losses, lr and validation metrics (k-NN: configs/_base_/knn/) go to every backend
# here. TensorBoard: `tools/train.py CONFIG --tensorboard` (extra [tensorboard]), or
# add dict(type='TensorboardVisBackend') below; Weights & Biases (pip install wandb):
# dict(type='WandbVisBackend', init_kwargs=dict(project='cmae_mm')).
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
# fixed seed, a different seed per rank (the released recipes)
randomness = dict(seed=0, diff_rank_seed=True)
# each training sample's random transforms (crops, flips, colour, ConMIM's masks) are
# seeded from (seed, rank, epoch, its position in the rank's stream): the same for
# any number of DataLoader workers, continued exactly by a resume (CheckedRunner,
# i.e. tools/train.py; docs/training.md, "Randomness across ranks and resumes")
train_sample_seeding = True
