"""MMEngine's Runner with the checks a week-long run needs (docs/reliability.md)."""
import copy
import math
import os.path as osp
import re
from typing import Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.dist import broadcast, get_rank, get_world_size
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .checkpoint import (allow_mmengine_checkpoint_globals,
                         find_latest_intact_checkpoint, load_checkpoint_file,
                         verify_checkpoint)
from .randomness import seed_train_samples
from .work_dir_lock import WorkDirLock, WorkDirLocked


def _flatten(obj, prefix: str = '') -> Dict[str, object]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}{k}.'))
        return out
    if isinstance(obj, (list, tuple)) and any(isinstance(v, dict) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f'{prefix}{i}.'))
        return out
    return {prefix[:-1]: obj}


#: options whose values a resume replaces by the checkpoint's (optimizer and
#: lr-scheduler states are restored)
RESUME_RESTORED = ('optim_wrapper.optimizer', 'param_scheduler')


def options_discarded_by_resume(saved_cfg_text: str, cfg: Config) -> List[str]:
    """``'key: saved -> now'`` for every option under :data:`RESUME_RESTORED` that
    differs between the checkpoint's config and ``cfg``."""
    saved = Config.fromstring(saved_cfg_text, file_format='.py')
    changed = []
    for root in RESUME_RESTORED:
        old = _flatten(saved.to_dict().get(root.split('.')[0], {}))
        new = _flatten(cfg.to_dict().get(root.split('.')[0], {}))
        sub = root.split('.', 1)[1] + '.' if '.' in root else ''
        for key in sorted(set(old) | set(new)):
            if not key.startswith(sub):
                continue
            if old.get(key) != new.get(key):
                changed.append(f'{root.split(".")[0]}.{key}: {old.get(key)!r} -> '
                               f'{new.get(key)!r}')
    return changed


def check_training_setup(runner: Runner, loader) -> None:
    """Model / data consistency that MMEngine would only report deep in training.

    Raises ``ValueError`` naming the option and the fix when the per-GPU batch does
    not fit the dataset, when a model that needs at least ``model.min_batch_size``
    samples per GPU (CMAE: BatchNorm in its projector) could get fewer, or when the
    pipeline's view size differs from the backbone's ``img_size``.
    """
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    dataset, batch = loader.dataset, loader.batch_size
    world = get_world_size()
    per_rank = math.ceil(len(dataset) / world)
    drop_last = getattr(loader, 'drop_last', False)
    if len(dataset) == 0:
        raise ValueError('The training dataset is empty: check '
                         'train_dataloader.dataset.data_root and its layout.')
    if batch and per_rank < batch and drop_last:
        raise ValueError(
            f'train_dataloader.batch_size={batch} per GPU x {world} process(es) needs '
            f'at least {batch * world} images, the dataset has {len(dataset)}: with '
            f'drop_last=True no batch would remain. Lower train_dataloader.batch_size '
            f'or use more data.')
    need = getattr(model, 'min_batch_size', 1)
    if batch is not None and batch < need:
        raise ValueError(
            f'{type(model).__name__} needs at least {need} samples per GPU (BatchNorm '
            f'in its projector / predictor), got train_dataloader.batch_size={batch}.')
    if batch and need > 1 and not drop_last and 0 < (per_rank % batch) < need:
        raise ValueError(
            f'The last batch of each epoch would hold {per_rank % batch} sample(s) '
            f'({per_rank} per process, batch {batch}), fewer than the {need} '
            f'{type(model).__name__} needs: set train_dataloader.drop_last=True.')
    backbone = getattr(model, 'backbone', None)
    img_size = getattr(backbone, 'img_size', None)
    if img_size is None:
        return
    img_size = tuple(img_size) if isinstance(img_size,
                                             (tuple, list)) else (img_size, ) * 2
    # the size the model sees: a PixelShift view, else the last RandomResizedCrop
    found = None
    for t in getattr(getattr(dataset, 'pipeline', None), 'transforms', []) or []:
        if getattr(t, 'view_size', None) is not None:
            found = (t, 'view_size', t.view_size)
        elif type(t).__name__.endswith('RandomResizedCrop') and (found is None or
                                                                 found[1] == 'scale'):
            found = (t, 'scale', t.scale)
    if found is None:
        return
    t, option, size = found
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, ) * 2
    view_sizes = getattr(model.data_preprocessor, 'view_sizes', None)
    if view_sizes is not None and option == 'scale':  # views made on the device
        t, option, size = model.data_preprocessor, 'view_augments', view_sizes(size)[0]
    if size != img_size:
        raise ValueError(
            f'The pipeline makes {size[0]}x{size[1]} views ({type(t).__name__}.'
            f'{option}) but model.backbone.img_size is {img_size[0]}x{img_size[1]}: '
            f"set both to the same size (and the decoders' num_patches to match).")


def _examples(items: List[str], n: int = 5) -> str:
    return ', '.join(
        items[:n]) + (f', ... ({len(items)} in all)' if len(items) > n else '')


def model_mismatch(model: torch.nn.Module, state_dict: dict) -> List[str]:
    """What keeps ``state_dict`` (a checkpoint's, ``module.`` prefixes allowed) from
    being ``model``'s: model parameters it lacks, keys the model lacks, shapes that
    differ (a few of each, with counts); ``[]`` when it fits. Non-tensor entries
    (``_extra_state``) and model buffers missing from the checkpoint are ignored
    (MMEngine warns about the latter)."""
    saved = {
        re.sub(r'^module\.', '', k): tuple(v.shape)
        for k, v in state_dict.items() if isinstance(v, torch.Tensor)
    }
    own = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)
    }
    params = [n for n, _ in model.named_parameters()]
    missing = [k for k in params if k not in saved]
    unexpected = sorted(k for k in saved if k not in model.state_dict())
    shapes = [
        f'{k}: checkpoint {list(saved[k])} vs model {list(own[k])}' for k in own
        if k in saved and saved[k] != own[k]
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} of the model\'s {len(params)} parameters '
                        f'are not in the checkpoint: {_examples(missing)}')
    if unexpected:
        problems.append(f'{len(unexpected)} of the checkpoint\'s {len(saved)} tensors '
                        f'are not in the model: {_examples(unexpected)}')
    if shapes:
        problems.append(f'{len(shapes)} shapes differ: {_examples(shapes, 3)}')
    return problems


def describe_saved_config(meta: dict) -> str:
    """``'<config name> (model <type>)'`` of a checkpoint's ``meta``."""
    name = re.sub(r'_\d{8}_\d{6}$', '', str(meta.get('experiment_name', '?')))
    model_type = '?'
    if isinstance(meta.get('cfg'), str):
        try:
            model_type = Config.fromstring(
                meta['cfg'], file_format='.py').model.get('type', '?')
        except Exception:  # a saved config that does not parse: regex
            m = re.search(r"model\s*=\s*dict\(\s*type\s*=\s*'([^']+)'", meta['cfg'])
            model_type = m.group(1) if m else '?'
    return f'{name}.py (model {model_type})'


def _set_bad_image_log(cfg, path: str) -> None:
    """Point every ``SafeLoadImageFromFile`` of a dataloader config at ``path``
    (before the dataset is built: DataLoader workers fork from it)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SafeLoadImageFromFile':
            cfg['bad_image_log'] = path
        for value in cfg.values():
            _set_bad_image_log(value, path)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _set_bad_image_log(value, path)


def apply_compile_blocks(cfg, model: torch.nn.Module) -> List[str]:
    """The config's ``compile_blocks`` on a built model: False / None: nothing;
    True: ``torch.compile``'s defaults; a dict: its kwargs
    (:func:`cmae_mm.models.utils.compile_blocks`, in place). Returns the compiled
    blocks' names. Refuses MMEngine's ``compile`` (the whole ``train_step``) with it;
    ``compile`` alone is left to MMEngine, with a warning (docs/performance.md)."""
    setting = cfg.get('compile_blocks', False)
    whole_step = cfg.get('compile', None)
    if whole_step and setting:
        raise ValueError(
            f'compile={whole_step!r} (MMEngine compiles the whole train_step) and '
            f'compile_blocks={setting!r} (cmae_mm compiles the transformer blocks) '
            f'are both set: choose one. compile_blocks is the one that works with '
            f"MMEngine's optimizers (docs/performance.md, \"Compiled blocks\"): "
            f'remove compile from the config (--cfg-options compile=None).')
    if whole_step:
        MMLogger.get_current_instance().warning(
            "compile: MMEngine compiles the whole train_step; with MMEngine's "
            "ConfigDict param groups Dynamo fails in the optimizer's step "
            '(docs/performance.md, "Compiled blocks"). Use compile_blocks=True '
            '(tools/train.py --compile-blocks) instead.')
    if not setting:
        return []
    if setting is not True and not isinstance(setting, dict):
        raise TypeError(
            f'compile_blocks must be False, True or a dict of torch.compile kwargs '
            f"(e.g. dict(mode='max-autotune', dynamic=False)), got {setting!r}.")
    from ..models.utils.compile import compile_blocks  # engine -> models: lazy
    return compile_blocks(model, **({} if setting is True else dict(setting)))


@RUNNERS.register_module()
class CheckedRunner(Runner):
    """MMEngine's ``Runner`` plus the safety checks of docs/reliability.md.

    - Before the schedule is built, :func:`check_training_setup` (batch vs dataset,
      minimum batch, view size vs ``img_size``), with errors naming the option.
    - Auto-resume (``resume=True``, no ``load_from``) loads the newest checkpoint that
      reads back (:func:`~cmae_mm.engine.checkpoint.find_latest_intact_checkpoint`),
      logging the newer ones it skipped and why; with nothing to resume it says so
      and starts from scratch (a scheduler relaunching the same command works).
      An explicit checkpoint that does not read back is an error naming it.
    - Options a resume discards (optimizer settings, lr schedule: their saved
      states are restored) are listed in a warning.
    - ``train_sample_seeding = True`` in the config: the training samples' random
      draws are derived from (seed, rank, epoch, position), so a resume continues
      them exactly (:func:`~cmae_mm.engine.randomness.seed_train_samples`).

    - ``compile_blocks`` in the config (True or ``torch.compile`` kwargs): the
      model's transformer blocks are compiled in place once it is built
      (:func:`apply_compile_blocks`).
    - Checkpoints are read weights-only: the allow-list of
      :func:`~cmae_mm.engine.checkpoint.allow_mmengine_checkpoint_globals` is
      installed before MMEngine loads or resumes one.

    ``tools/train.py`` uses it; configs may name it with ``runner_type``.
    """

    def build_model(self, model) -> torch.nn.Module:
        """MMEngine's ``build_model``, then the config's ``compile_blocks``
        (:func:`apply_compile_blocks`; before DDP wrapping)."""
        model = super().build_model(model)
        apply_compile_blocks(self.cfg, model)
        return model

    def build_train_loop(self, loop):
        if isinstance(self._train_dataloader, dict):
            name = ('bad_images.txt'
                    if get_world_size() == 1 else f'bad_images_rank{get_rank()}.txt')
            _set_bad_image_log(self._train_dataloader, osp.join(self.work_dir, name))
            if self.cfg.get('train_sample_seeding', False):
                self._seed_train_samples()
        loop = super().build_train_loop(loop)
        check_training_setup(self, loop.dataloader)
        return loop

    def _seed_train_samples(self) -> None:
        """``train_sample_seeding = True``: each training sample's random draws
        derived from (seed, rank, epoch, position), see cmae_mm/engine/randomness.py."""
        self._train_dataloader = copy.deepcopy(self._train_dataloader)
        why_not = seed_train_samples(self._train_dataloader)
        if why_not is None:
            self.logger.info('train_sample_seeding: every training sample is seeded '
                             'from (seed, rank, epoch, position in the stream).')
        else:
            self.logger.warning(
                f'train_sample_seeding: the train_dataloader is left as configured '
                f'({why_not}): its random transforms use the worker / process streams '
                f'of MMEngine, which a resume does not continue.')

    def setup_env(self, env_cfg: Dict) -> None:
        """MMEngine's set-up (distributed init, timestamp), then, for a training run,
        the work-dir lock, before the log dir or anything else is written."""
        super().setup_env(env_cfg)
        self._work_dir_lock: Optional[WorkDirLock] = None
        self._lock_warning: Optional[str] = None
        if self._train_loop is None:  # evaluation may share a training run's dir
            return
        refusal = ''
        if self._rank == 0:
            lock = WorkDirLock(self.work_dir)
            try:
                self._lock_warning = lock.acquire()
                self._work_dir_lock = lock
            except WorkDirLocked as e:
                refusal = str(e)
        if self._world_size > 1:  # every process stops, not rank 0 alone
            flag = torch.tensor([int(bool(refusal))])
            broadcast(flag)
            if flag.item() and not refusal:
                refusal = (f'{self.work_dir} is used by another training run (rank 0 '
                           f'names it).')
        if refusal:
            raise WorkDirLocked(refusal)

    def train(self) -> torch.nn.Module:
        """MMEngine's ``train``; the work-dir lock is released when it ends."""
        if self._lock_warning:
            self.logger.warning(self._lock_warning)
        try:
            return super().train()
        finally:
            if self._work_dir_lock is not None:
                self._work_dir_lock.release()

    def load_or_resume(self) -> None:
        """MMEngine's ``load_or_resume`` (``train``, ``val`` and ``test`` call it),
        with the resume checks above."""
        if self._resume and not self._has_loaded:
            if self._load_from is None:
                path, skipped = find_latest_intact_checkpoint(self.work_dir)
                for bad, reason in skipped:
                    self.logger.warning(f'Resume: skipping {bad}: {reason}.')
                if path is None:
                    self.logger.warning(
                        f'Resume: no checkpoint to resume in {self.work_dir}; '
                        f'starting from scratch.')
                    self._resume = False
                    return super().load_or_resume()
                self.logger.info(f'Resume: the newest intact checkpoint is {path}.')
                self._load_from = path
            else:
                reason = verify_checkpoint(self._load_from)
                if reason is not None:
                    raise RuntimeError(
                        f'Cannot resume from {self._load_from}: {reason}. Resume from '
                        f'another checkpoint, or with --resume and no path for the '
                        f'newest intact one in the work dir.')
            if osp.isfile(self._load_from):
                ckpt = load_checkpoint_file(self._load_from, mmap=True)
                self._check_resumed_model(self._load_from, ckpt)
                self._warn_discarded_options(self._load_from, ckpt.get('meta') or {})
        return super().load_or_resume()

    def load_checkpoint(self, filename: str, *args, **kwargs) -> dict:
        """MMEngine's ``load_checkpoint``, with the weights-only allow-list."""
        allow_mmengine_checkpoint_globals()
        return super().load_checkpoint(filename, *args, **kwargs)

    def resume(self, filename: str, *args, **kwargs) -> None:
        """MMEngine's ``resume``, with the weights-only allow-list."""
        allow_mmengine_checkpoint_globals()
        return super().resume(filename, *args, **kwargs)

    def _check_resumed_model(self, path: str, ckpt: dict) -> None:
        """Refuse a resume whose checkpoint is another model's (MMEngine would load
        what fits, then fail on the optimizer's parameter groups, or train on)."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        problems = model_mismatch(model, ckpt.get('state_dict') or {})
        if not problems:
            return
        here = osp.basename(self.cfg.filename) if self.cfg.filename else 'this config'
        raise ValueError(
            f'Cannot resume from {path}: it is not a checkpoint of this config\'s '
            f'model. The checkpoint was trained with '
            f'{describe_saved_config(ckpt.get("meta") or {})}; this run is {here} '
            f'(model {type(model).__name__}). {". ".join(problems)}. Resume with the '
            f'config the checkpoint was trained with, or start a new run in another '
            f'work dir from its weights: --cfg-options load_from={path} without '
            f'--resume (matching weights are loaded, the optimizer starts anew).')

    def _warn_discarded_options(self, path: str, meta: dict) -> None:
        if not isinstance(meta.get('cfg'), str):
            return
        try:
            changed = options_discarded_by_resume(meta['cfg'], self.cfg)
        except Exception as e:  # an unreadable saved config only loses the warning
            self.logger.warning(f'Resume: could not compare the configs ({e}).')
            return
        if changed:
            self.logger.warning(
                f'Resume from {osp.basename(path)} restores the optimizer and '
                f'lr-scheduler states saved there, so these changed options have no '
                f'effect: {"; ".join(changed)}. To apply them, start a new run from '
                f'the weights: load_from={path} without --resume.')
