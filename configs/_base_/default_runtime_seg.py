# MMSegmentation runtime of the segmentation configs: MMSegmentation 1.2.2's
# configs/_base_/default_runtime.py, inherited (no collate_fn in it, so the `_scope_`
# that cross-package inheritance adds does no harm, docs/software_stack.md), plus
# cmae_mm's modules and run checks.
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)
# cmae_mm's Runner (work-dir lock, checked resume, weights-only loading, set-up
# checks; docs/reliability.md) under any launcher: tools/train.py, `mim train`, ...
runner_type = 'CheckedRunner'

randomness = dict(seed=0, diff_rank_seed=True)
# SIGTERM (Slurm preemption / time limit) or SIGUSR1 (`--signal=USR1@120`): finish
# the iteration, save a checkpoint, exit 124 (docs/training.md, Slurm). A custom
# hook here, as default_hooks come from the schedule (schedule_160k.py).
custom_hooks = [dict(type='PreemptionHook')]
