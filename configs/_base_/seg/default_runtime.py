# MMSegmentation runtime of the segmentation configs: MMSegmentation 1.2.2's
# configs/_base_/default_runtime.py, owned here (cross-package `_base_` inheritance
# breaks collate_fn, docs/software_stack.md).
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
default_scope = 'mmseg'

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
randomness = dict(seed=0, diff_rank_seed=True)
# SIGTERM (Slurm preemption / time limit) or SIGUSR1 (`--signal=USR1@120`): finish
# the iteration, save a checkpoint, exit 124 (docs/training.md, Slurm). A custom
# hook here, as default_hooks come from the schedule (schedule_160k.py).
custom_hooks = [dict(type='PreemptionHook')]
