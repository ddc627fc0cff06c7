"""MMEngine's Runner with the checks a week-long run needs (docs/reliability.md)."""
import copy
import json
import math
import os.path as osp
import time
import uuid
from typing import Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.dist import (broadcast, broadcast_object_list, get_rank, get_world_size,
                           is_main_process)
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.registry import RUNNERS
from mmengine.runner import BaseLoop, Runner

from .checkpoint import (allow_mmengine_checkpoint_globals, describe_saved_config,
                         find_latest_intact_checkpoint, load_checkpoint_file,
                         model_mismatch, verify_checkpoint)
from .checkpoint_saving import atomic_write
from .option_check import check_options
from .randomness import seed_train_samples
from .run_fingerprint import (FINGERPRINT_KEY, RUN_RECORD, config_hash, data_part,
                              fingerprint_mismatch, flatten, model_part)
from .work_dir_lock import WorkDirLock, WorkDirLocked

#: options whose values a resume replaces by the checkpoint's (optimizer and
#: lr-scheduler states are restored)
RESUME_RESTORED = ('optim_wrapper.optimizer', 'param_scheduler')


def options_discarded_by_resume(saved_cfg_text: str, cfg: Config) -> List[str]:
    """``'key: saved -> now'`` for every option under :data:`RESUME_RESTORED` that
    differs between the checkpoint's config and ``cfg``."""
    saved = Config.fromstring(saved_cfg_text, file_format='.py')
    changed = []
    for root in RESUME_RESTORED:
        old = flatten(saved.to_dict().get(root.split('.')[0], {}))
        new = flatten(cfg.to_dict().get(root.split('.')[0], {}))
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


def optimizer_mismatch(optim_wrapper, saved: dict, model: torch.nn.Module) -> List[str]:
    """What keeps a checkpoint's optimizer state ``saved`` from being
    ``optim_wrapper``'s: other numbers of parameter groups or of parameters in a
    group, state tensors whose shapes differ from the parameter they are restored
    onto (matched by position, as ``torch.optim`` does: a model whose parameters
    have the checkpoint's names and shapes in another order fails in the first
    step); ``[]`` when it fits."""
    if isinstance(optim_wrapper, OptimWrapperDict):
        return [
            f'optimizer {name}: {problem}' for name, wrapper in optim_wrapper.items()
            for problem in optimizer_mismatch(wrapper,
                                              saved.get(name) or {}, model)
        ]
    groups, state = saved.get('param_groups'), saved.get('state') or {}
    optimizer = getattr(optim_wrapper, 'optimizer', None)
    if not isinstance(groups, list) or optimizer is None:
        return []
    now = optimizer.param_groups
    if len(groups) != len(now):
        return [
            f"the checkpoint's optimizer has {len(groups)} parameter groups, "
            f"this run's {len(now)}"
        ]
    names = {id(p): n for n, p in model.named_parameters()}
    problems = []
    for i, (old, new) in enumerate(zip(groups, now)):
        if len(old['params']) != len(new['params']):
            problems.append(f"optimizer parameter group {i}: {len(old['params'])} "
                            f"parameters in the checkpoint, {len(new['params'])} here")
            continue
        for index, param in zip(old['params'], new['params']):
            for key, value in (state.get(index) or {}).items():
                if not (torch.is_tensor(value) and value.dim()):
                    continue  # Adam's step count
                if value.shape != param.shape:
                    problems.append(f'{names.get(id(param), "?")}: optimizer state '
                                    f'{key} {list(value.shape)} vs parameter '
                                    f'{list(param.shape)}')
                    break
    if len(problems) > 3:
        problems = problems[:3] + [f'... ({len(problems)} in all)']
    return problems


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
        check_options(self.cfg, type(self))  # misspelled options: stop before anything
        super().setup_env(env_cfg)
        self._work_dir_lock: Optional[WorkDirLock] = None
        self._lock_warning: Optional[str] = None
        self._run_id = self._new_run_id()
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
                    return self.load_or_resume()
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
                self._check_run_fingerprint(self._load_from, ckpt.get('meta') or {})
                self._warn_discarded_options(self._load_from, ckpt.get('meta') or {})
        if isinstance(self._train_loop, BaseLoop) and not self._has_loaded:
            self._write_run_record()  # a training run: fresh start or resume
        return super().load_or_resume()

    # ------------------------------------------------------------ run fingerprint
    @staticmethod
    def _new_run_id() -> str:
        """A new run id (time and randomness), the same on every process."""
        run_id = [f'{time.strftime("%Y%m%d_%H%M%S")}_{uuid.uuid4().hex[:8]}']
        if get_world_size() > 1:
            broadcast_object_list(run_id)
        return run_id[0]

    @property
    def run_id(self) -> str:
        """This run's id: new at a fresh start, the checkpoint's after a resume."""
        return self._run_id

    def run_fingerprint(self) -> dict:
        """What every checkpoint's ``meta['run_fingerprint']`` holds: the run id,
        the hashes of the model and data parts of the config (:func:`model_part`,
        :func:`data_part`) and the seed."""
        if not hasattr(self, '_config_hashes'):  # the config is fixed for the run
            self._config_hashes = dict(
                model=config_hash(model_part(self.cfg)),
                data=config_hash(data_part(self.cfg)))
        return dict(run_id=self._run_id, **self._config_hashes, seed=self.seed)

    def save_checkpoint(self, out_dir: str, filename: str, *args, meta=None, **kwargs):
        """MMEngine's ``save_checkpoint``, with :meth:`run_fingerprint` in the
        ``meta``."""
        meta = dict(meta or {}, **{FINGERPRINT_KEY: self.run_fingerprint()})
        return super().save_checkpoint(out_dir, filename, *args, meta=meta, **kwargs)

    def _read_run_record(self) -> Optional[dict]:
        path = osp.join(self.work_dir, RUN_RECORD)
        try:
            with open(path) as f:
                record = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self.logger.warning(f'Resume: {path} does not read ({e}); the run id of '
                                f'the checkpoint is not checked.')
            return None
        return record if isinstance(record, dict) else None

    def _write_run_record(self) -> None:
        """``WORK_DIR/run_fingerprint.json``: the run this work dir holds (its id
        names the checkpoints ``--resume`` accepts)."""
        if is_main_process():
            record = dict(self.run_fingerprint(), config=self.cfg.filename)
            atomic_write(
                osp.join(self.work_dir, RUN_RECORD),
                (json.dumps(record, indent=1, default=str) + '\n').encode())

    def _check_run_fingerprint(self, path: str, meta: dict) -> None:
        """Refuse a checkpoint of another run (run id other than the work dir's
        record) or of another model (model config hash), naming every mismatch,
        unless ``accept_foreign_checkpoint=True`` (``--accept-foreign-checkpoint``);
        then, and for a changed seed or data config, warn. The run continues
        under the checkpoint's run id."""
        saved = meta.get(FINGERPRINT_KEY)
        record = self._read_run_record()
        if not isinstance(saved, dict):
            self.logger.warning(
                f'Resume: {path} holds no run fingerprint (written before cmae_mm '
                f'recorded one): whether it belongs to this run is not checked.')
            if record and record.get('run_id'):
                self._run_id = str(record['run_id'])
            return
        problems, foreign = fingerprint_mismatch(
            saved, self.run_fingerprint(), record,
            self._randomness_cfg.get('seed') is not None,
            meta.get('cfg') if isinstance(meta.get('cfg'), str) else None, self.cfg)
        accept = bool(self.cfg.get('accept_foreign_checkpoint', False))
        if foreign and not accept:
            raise ValueError(
                f'Cannot resume from {path}: it is a checkpoint of another run or '
                f'another model. {"; ".join(problems)}. If it is the one to '
                f'continue, resume with --accept-foreign-checkpoint '
                f'(accept_foreign_checkpoint=True in the config); otherwise remove '
                f'it from {self.work_dir} (the newest checkpoint of this run is then '
                f'resumed), resume with the config it was trained with, or start a '
                f'new run from its weights: --cfg-options load_from={path} without '
                f'--resume.')
        if problems:
            self.logger.warning(f'Resume from {path}: {"; ".join(problems)}.' + (
                ' Accepted (accept_foreign_checkpoint).' if foreign else ''))
        self._run_id = str(saved.get('run_id') or self._run_id)
        self.logger.info(f'Resume: run id {self._run_id}.')

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
        if not problems and isinstance(ckpt.get('optimizer'), dict) and not isinstance(
                self.optim_wrapper, dict):
            problems = optimizer_mismatch(self.optim_wrapper, ckpt['optimizer'], model)
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
            f'--resume (matching weights are loaded, the optimizer starts anew). '
            f'--accept-foreign-checkpoint does not apply: the saved tensors do not '
            f'fit this model.')

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
