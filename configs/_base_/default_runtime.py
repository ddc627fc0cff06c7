# MMPretrain runtime of every cmae_mm pretraining and classification config: MMPretrain
# 1.2.0's configs/_base_/default_runtime.py, inherited (no collate_fn in it, so the
# `_scope_` that cross-package inheritance adds does no harm; dataset bases are
# owned here for that reason, docs/software_stack.md), plus cmae_mm's modules, hooks
# and run checks.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
# cmae_mm's Runner (work-dir lock, checked resume, weights-only loading, set-up
# checks, train_sample_seeding below; docs/reliability.md) under any launcher:
# tools/train.py, `mim train`, MMPretrain's tools/train.py
runner_type = 'CheckedRunner'

default_hooks = dict(
    # keep the latest 3 checkpoints (as MMPretrain's MAE / MoCo v3 configs), written
    # atomically, old ones removed only after the new one is complete
    checkpoint=dict(type='SafeCheckpointHook', max_keep_ckpts=3),
    # stop before a non-finite loss updates the weights; never save non-finite
    # weights (action='skip' to skip such iterations; docs/reliability.md)
    nonfinite_guard=dict(type='NonFiniteGuardHook', action='stop'),
    # bad images skipped by SafeLoadImageFromFile are listed in bad_images.txt
    data_fault=dict(type='DataFaultHook'),
    # SIGTERM (Slurm preemption / time limit) or SIGUSR1 (`--signal=USR1@120`):
    # finish the iteration, save a checkpoint, exit 124 (docs/training.md, Slurm)
    preemption=dict(type='PreemptionHook'),
)

# env_cfg: MMPretrain's (NCCL on GPUs; tools/train.py switches to gloo when there is
# no GPU). Visualizer: MMPretrain's UniversalVisualizer, LocalVisBackend; losses, lr
# and validation metrics (k-NN: configs/_base_/datasets/*_knn.py) go to every backend.
# TensorBoard: `tools/train.py CONFIG --tensorboard` (extra [tensorboard]), or
# vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')];
# Weights & Biases (pip install wandb): dict(type='WandbVisBackend',
# init_kwargs=dict(project='cmae_mm')).

# fixed seed, a different seed per rank (the released recipes)
randomness = dict(_delete_=True, seed=0, diff_rank_seed=True)
# each training sample's random transforms (crops, flips, colour, ConMIM's masks) are
# seeded from (seed, rank, epoch, its position in the rank's stream): the same for
# any number of DataLoader workers, continued exactly by a resume (CheckedRunner,
# i.e. tools/train.py; docs/training.md, "Randomness across ranks and resumes")
train_sample_seeding = True
# torch.compile each transformer block in place (state-dict names unchanged):
# True, or a dict of torch.compile kwargs, e.g. dict(mode='max-autotune',
# dynamic=False); tools/train.py --compile-blocks. MMEngine's compile=True (the whole
# train_step) fails on these configs and is refused with it (docs/performance.md,
# "Compiled blocks")
compile_blocks = False
