"""Saving checkpoints that a fault cannot destroy (docs/reliability.md).

Reading and verifying them is :mod:`cmae_mm.engine.checkpoint`.

- :class:`AtomicLocalBackend`: MMEngine's local file backend whose writes go to a
  temporary file in the same folder, are flushed and fsynced, then ``os.replace``-d
  onto the final name (and the folder fsynced). A kill during a save leaves the old
  file or the new one, never a truncated one.
- :func:`write_last_checkpoint`: ``last_checkpoint`` written atomically, relative to
  the work dir (a copied or moved work dir resumes from its own files).
- :class:`SafeCheckpointHook`: MMEngine's ``CheckpointHook`` writing through that
  backend, writing ``last_checkpoint`` that way, and removing old checkpoints only
  after the new one is complete (MMEngine removes the oldest first), counting those
  already in the folder after a resume.
"""
import os
import os.path as osp
import re
import tempfile
from collections import deque
from typing import List, Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from .checkpoint import allow_mmengine_checkpoint_globals, read_last_checkpoint


def atomic_write(filepath: str, data: bytes) -> None:
    """Write ``data`` to ``filepath`` so that the file is either the old one or
    complete: temporary file in the same folder, fsync, ``os.replace``, fsync of the
    folder (so that the rename itself survives a power cut)."""
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(filepath)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; keep the usual mode
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_last_checkpoint(work_dir: str, ckpt_path: str) -> None:
    """Write ``work_dir/last_checkpoint`` atomically, naming ``ckpt_path`` relative
    to ``work_dir`` when it lies inside it (absolute, or a URL, otherwise: an
    ``out_dir`` elsewhere). Read it with
    :func:`~cmae_mm.engine.checkpoint.read_last_checkpoint`."""
    named = str(ckpt_path)
    if '://' not in named:
        rel = osp.relpath(osp.abspath(named), osp.abspath(work_dir))
        if rel != '..' and not rel.startswith('..' + osp.sep):
            named = rel
    atomic_write(osp.join(work_dir, 'last_checkpoint'), named.encode())


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` with atomic :meth:`put` and :meth:`put_text`.

    Select it with ``backend_args=dict(backend='atomic_local')`` (what
    :class:`SafeCheckpointHook` does)."""

    def put(self, obj: bytes, filepath: Union[str, 'os.PathLike']) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, 'os.PathLike'],
                 encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` that never leaves a broken checkpoint behind.

    Same arguments and behaviour (``interval``, ``by_epoch``, ``max_keep_ckpts``,
    ``save_best``, ``save_last``, ...), with these differences:

    - checkpoints are written through :class:`AtomicLocalBackend` (temporary file,
      fsync, rename) when they go to a local folder;
    - ``last_checkpoint`` is written the same way, after the checkpoint is complete,
      relative to the work dir (:func:`write_last_checkpoint`);
    - checkpoints beyond ``max_keep_ckpts`` are removed after the new one is written,
      not before, so a failure while saving never costs the last good one (nor the
      one a run resumed from);
    - after a resume the rotation counts the checkpoints already in the folder (up to
      the resumed step), not only those this process wrote: ``max_keep_ckpts``
      holds across resumes.

    A hook that refuses to save (``before_save_checkpoint`` raising, as
    :class:`NonFiniteGuardHook` does for non-finite weights) leaves the folder as it
    was.

    ``before_run`` installs the weights-only allow-list
    (:func:`~cmae_mm.engine.checkpoint.allow_mmengine_checkpoint_globals`), so that a
    plain MMEngine ``Runner`` whose config uses this hook resumes the checkpoints it
    writes (MMEngine loads them after ``before_run``); for such a runner's
    auto-resume it also resolves the relative ``last_checkpoint`` (MMEngine reads it
    as a path from the current directory).
    """

    def __init__(self, *args, backend_args: Optional[dict] = None, **kwargs) -> None:
        if backend_args is None and kwargs.get('file_client_args') is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def before_run(self, runner) -> None:
        allow_mmengine_checkpoint_globals()
        super().before_run(runner)
        if (getattr(runner, '_resume', False)
                and getattr(runner, '_load_from', '') is None
                and type(runner).load_or_resume is Runner.load_or_resume):
            runner._load_from = read_last_checkpoint(runner.work_dir)

    def before_train(self, runner) -> None:
        """MMEngine's set-up, without its early removal of surplus checkpoints; the
        rotation list is what the resumed checkpoint recorded plus the checkpoints in
        the folder up to the resumed step (:meth:`_checkpoints_on_disk`)."""
        hub = runner.message_hub
        recorded = list(hub.runtime_info.pop('keep_ckpt_ids', None) or [])
        super().before_train(runner)  # sees no list: removes nothing
        if self.max_keep_ckpts <= 0:
            return
        upto = runner.epoch if self.by_epoch else runner.iter
        recorded = [s for s in recorded if isinstance(s, int) and s <= upto]
        ids = sorted(set(recorded) | set(self._checkpoints_on_disk(upto)))
        self.keep_ckpt_ids = deque(ids)  # no maxlen: trimmed after each save
        hub.update_info('keep_ckpt_ids', list(ids))

    def _checkpoints_on_disk(self, upto: int) -> List[int]:
        """Steps N <= ``upto`` of the ``filename_tmpl`` files in a local ``out_dir``
        (those of the run being resumed; higher ones will be overwritten)."""
        if not (isinstance(self.out_dir, str) and osp.isdir(self.out_dir)):
            return []
        head, _, tail = self.filename_tmpl.partition('{}')
        pattern = re.compile(f'^{re.escape(head)}(\\d+){re.escape(tail)}$')
        steps = (pattern.match(name) for name in os.listdir(self.out_dir))
        return [int(m.group(1)) for m in steps if m and int(m.group(1)) <= upto]

    def _save_checkpoint_with_step(self, runner, step, meta):
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        # the rotation list as it will be once this checkpoint is complete, recorded
        # in it (so that a resume knows the older ones); files removed only after
        kept = list(getattr(self, 'keep_ckpt_ids', []))
        removed = []
        if self.max_keep_ckpts > 0 and not (kept and kept[-1] == step):
            kept = [s for s in kept if s != step] + [step]
            removed = kept[:-self.max_keep_ckpts]
            kept = kept[-self.max_keep_ckpts:]
        hub = runner.message_hub
        before = hub.runtime_info.get('keep_ckpt_ids')
        if self.max_keep_ckpts > 0:
            hub.update_info('keep_ckpt_ids', list(kept))
        try:
            runner.save_checkpoint(
                self.out_dir,
                ckpt_filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
        except BaseException:  # nothing was saved: the list stays as it was
            hub.runtime_info.pop('keep_ckpt_ids', None)
            if before is not None:
                hub.update_info('keep_ckpt_ids', before)
            raise
        hub.update_info('last_ckpt', self.last_ckpt)
        if is_main_process():
            write_last_checkpoint(runner.work_dir, self.last_ckpt)
        if self.max_keep_ckpts <= 0:
            return
        self.keep_ckpt_ids = deque(kept)
        for old in removed:  # only now that the new one is complete
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(old))
            if is_main_process() and self.file_backend.isfile(path):
                self.file_backend.remove(path)
