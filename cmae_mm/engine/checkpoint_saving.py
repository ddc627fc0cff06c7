"""Saving checkpoints that a fault cannot destroy (docs/reliability.md).

Reading and verifying them is :mod:`cmae_mm.engine.checkpoint`.

- :class:`AtomicLocalBackend`: MMEngine's local file backend whose writes go to a
  temporary file in the same folder, are flushed and fsynced, then ``os.replace``-d
  onto the final name (and the folder fsynced). A kill during a save leaves the old
  file or the new one, never a truncated one.
- :class:`SafeCheckpointHook`: MMEngine's ``CheckpointHook`` writing through that
  backend, writing ``last_checkpoint`` atomically, and removing old checkpoints only
  after the new one is complete (MMEngine removes the oldest first).
"""
import os
import os.path as osp
import tempfile
from typing import Optional, Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from .checkpoint import allow_mmengine_checkpoint_globals


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
    ``save_best``, ``save_last``, ...), with three differences:

    - checkpoints are written through :class:`AtomicLocalBackend` (temporary file,
      fsync, rename) when they go to a local folder;
    - ``last_checkpoint`` is written the same way, after the checkpoint is complete;
    - checkpoints beyond ``max_keep_ckpts`` are removed after the new one is written,
      not before, so a failure while saving never costs the last good one.

    A hook that refuses to save (``before_save_checkpoint`` raising, as
    :class:`NonFiniteGuardHook` does for non-finite weights) leaves the folder as it
    was.

    ``before_run`` installs the weights-only allow-list
    (:func:`~cmae_mm.engine.checkpoint.allow_mmengine_checkpoint_globals`), so that a
    plain MMEngine ``Runner`` whose config uses this hook resumes the checkpoints it
    writes (MMEngine loads them after ``before_run``).
    """

    def __init__(self, *args, backend_args: Optional[dict] = None, **kwargs) -> None:
        if backend_args is None and kwargs.get('file_client_args') is None:
            backend_args = dict(backend='atomic_local')
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def before_run(self, runner) -> None:
        allow_mmengine_checkpoint_globals()
        super().before_run(runner)

    def _save_checkpoint_with_step(self, runner, step, meta):
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
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
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if is_main_process():
            atomic_write(
                osp.join(runner.work_dir, 'last_checkpoint'),
                str(self.last_ckpt).encode())
        if self.max_keep_ckpts > 0:  # rotate only now that the new one is complete
            removed = []
            if not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
                # keep_ckpt_ids is a deque of maxlen max_keep_ckpts (MMEngine)
                while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                    removed.append(self.keep_ckpt_ids.popleft())
                self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
            for old in removed:
                path = self.file_backend.join_path(self.out_dir,
                                                   self.filename_tmpl.format(old))
                if is_main_process() and self.file_backend.isfile(path):
                    self.file_backend.remove(path)
