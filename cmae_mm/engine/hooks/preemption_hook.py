"""Save a checkpoint and stop when the cluster says the job must end (preemption,
time limit): SIGTERM, or the advance warning Slurm sends with ``--signal``."""
import os
import os.path as osp
import re
import signal
import threading
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, barrier, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ..checkpoint_saving import write_last_checkpoint

#: exit status of a run stopped by a signal after saving its checkpoint (as GNU
#: ``timeout``'s "time ran out"); distinct from 128 + 15 = 143, a run killed by
#: SIGTERM without saving
PREEMPTED_EXIT_CODE = 124


def _signal_number(sig: Union[str, int]) -> int:
    if isinstance(sig, int):
        return sig
    name = sig.upper() if sig.upper().startswith('SIG') else f'SIG{sig.upper()}'
    if not hasattr(signal, name):
        raise ValueError(f'PreemptionHook: unknown signal {sig!r}; use names such as '
                         f"'SIGTERM', 'SIGUSR1', 'SIGUSR2'.")
    return int(getattr(signal, name))


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On one of ``signals``, finish the current iteration, save a checkpoint that
    ``--resume`` finds, and exit with ``exit_code`` (docs/training.md, Slurm).

    The handlers are installed in ``before_train`` (main thread only) and the
    previous ones restored in ``after_train`` or before exiting; a handler only sets
    a flag, so a signal during a save or a data load does no harm, and a repeated
    signal is ignored (Slurm and ``torchrun`` may each deliver one SIGTERM). After
    every ``sync_interval``-th iteration the flag is all-reduced (MAX, one int32) so
    that every process stops after the same iteration even if the signal reached
    only some of them; MMEngine already waits for the GPU once per iteration (loss
    logging), so the extra cost is one tiny collective, tens of microseconds on NCCL.

    What is saved, through the run's checkpoint hook (:class:`SafeCheckpointHook`:
    atomic, ``last_checkpoint`` updated) unless it has just saved the same step:

    - iteration-based loop: ``iter_N.pth`` (N iterations done); the resume
      continues at iteration N with the data stream advanced as MMEngine does, so
      nothing is lost or repeated;
    - epoch-based loop, signal on the last iteration of an epoch: the epoch ends
      and ``epoch_E.pth`` is saved, nothing lost;
    - epoch-based loop, mid-epoch: ``iter_N.pth`` holding epoch E-1 done and N
      iterations. MMEngine's ``EpochBasedTrainLoop`` resumes it by replaying epoch E
      from its first batch (same sampler order), so the k iterations of epoch E done
      before the signal are trained again, and an iteration-based lr schedule ends k
      iterations before the run (its last value is kept). Once a newer epoch
      checkpoint is complete, such ``iter_N.pth`` files are removed (``--resume``
      orders checkpoints by their number, and N would outrank the epoch number).

    A signal during the last iteration lets the run finish normally (exit 0).

    Args:
        signals (Sequence[str | int]): Signals that stop the run. Defaults to
            ``('SIGTERM', 'SIGUSR1')``: Slurm's preemption / time-limit signal and
            the usual ``#SBATCH --signal=USR1@120`` advance warning.
        exit_code (int): Exit status after the checkpoint is saved. Defaults to
            :data:`PREEMPTED_EXIT_CODE` (124), for a requeue script to test.
        sync_interval (int): Iterations between the distributed agreements (1: stop
            after the iteration during which the signal came; larger: cheaper, up
            to ``sync_interval - 1`` iterations later). Defaults to 1.
    """

    priority = 'LOWEST'  # after the checkpoint hook of the same iteration / epoch

    def __init__(self,
                 signals: Sequence[Union[str, int]] = ('SIGTERM', 'SIGUSR1'),
                 exit_code: int = PREEMPTED_EXIT_CODE,
                 sync_interval: int = 1) -> None:
        if isinstance(signals, (str, int)):
            signals = (signals, )
        self.signals = [_signal_number(s) for s in signals]
        if not 0 <= int(exit_code) <= 255:
            raise ValueError(f'PreemptionHook: exit_code must be in 0..255, got '
                             f'{exit_code}.')
        if int(sync_interval) < 1:
            raise ValueError(f'PreemptionHook: sync_interval must be >= 1, got '
                             f'{sync_interval}.')
        self.exit_code = int(exit_code)
        self.sync_interval = int(sync_interval)
        self.received: Optional[int] = None
        self._previous: Dict[int, object] = {}
        self._stop_at_epoch_end = False
        self._last_ckpt_before: Optional[str] = None

    # ------------------------------------------------------------ signal handling
    def _handler(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def _install(self, runner) -> None:
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning(
                'PreemptionHook: training does not run in the main thread, where '
                'Python handles signals; a SIGTERM will end the run without a '
                'checkpoint.')
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)
        names = ', '.join(signal.Signals(s).name for s in self.signals)
        runner.logger.info(
            f'PreemptionHook: on {names} the run saves a checkpoint after the '
            f'current iteration and exits with status {self.exit_code}.')

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def before_train(self, runner) -> None:
        self.received = None
        self._stop_at_epoch_end = False
        self._install(runner)

    def after_train(self, runner) -> None:
        self._restore()
        if self.received is not None:
            runner.logger.warning(
                f'PreemptionHook: {signal.Signals(self.received).name} came during '
                f'the last iteration; the run finished normally.')

    # ------------------------------------------------------------ decisions
    def _agreed_stop(self) -> bool:
        flag = torch.tensor([int(self.received is not None)], dtype=torch.int32)
        if get_world_size() > 1:
            all_reduce(flag, op='max')
        return bool(flag.item())

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        done = runner.iter + 1
        if done % self.sync_interval or not self._agreed_stop():
            return
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            if done >= runner.max_iters:
                return  # the run ends now anyway
        elif self.end_of_epoch(runner.train_loop.dataloader, batch_idx):
            self._stop_at_epoch_end = True  # after_train_epoch: epoch_E.pth, unless
            return  # it was the last epoch
        self._stop(runner, epoch_end=False)

    def after_train_epoch(self, runner) -> None:
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            return
        self._cleanup_after_epoch_checkpoint(runner)
        if self._stop_at_epoch_end and runner.epoch + 1 < runner.max_epochs:
            self._stop(runner, epoch_end=True)

    # ------------------------------------------------------------ saving
    @staticmethod
    def _checkpoint_hook(runner) -> Optional[CheckpointHook]:
        return next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)

    def _stop(self, runner, epoch_end: bool) -> None:
        name = (
            signal.Signals(self.received).name
            if self.received else 'a stop signal on another process')
        path = self._save(runner, epoch_end)
        barrier()  # no process exits (and gets the others killed) before the save
        runner.logger.warning(
            f'PreemptionHook: {name} received; stopped after iteration '
            f'{runner.iter + (0 if epoch_end else 1)} (epoch {runner.epoch + 1}) with '
            f'the checkpoint {path}. Continue with tools/train.py ... --resume. '
            f'Exiting with status {self.exit_code}.')
        self._restore()
        try:
            runner.call_hook('after_run')  # loggers copy logs, visualizers close
        except Exception as e:  # the checkpoint is safe; report and still exit
            runner.logger.warning(f'PreemptionHook: after_run hooks failed: {e!r}')
        barrier()  # srun --kill-on-bad-exit: nobody exits while others finish
        raise SystemExit(self.exit_code)

    def _save(self, runner, epoch_end: bool) -> str:
        hook = self._checkpoint_hook(runner)
        out_dir = getattr(hook, 'out_dir', None) or runner.work_dir
        epoch_names = hook.by_epoch if hook is not None else not isinstance(
            runner.train_loop, IterBasedTrainLoop)
        if epoch_end:  # the epoch is complete: the loop's own meta
            meta = dict(epoch=runner.epoch + 1, iter=runner.iter)
            step = runner.epoch + 1 if epoch_names else runner.iter
        else:
            meta = dict(epoch=runner.epoch, iter=runner.iter + 1)
            step = runner.iter + 1
        filename = f'{"epoch" if epoch_end and epoch_names else "iter"}_{step}.pth'
        path = osp.join(out_dir, filename)
        if runner.message_hub.get_info('last_ckpt') == path:
            return path  # the checkpoint hook saved this very step
        if hook is not None and hook.filename_tmpl.format(step) == filename:
            hook._save_checkpoint_with_step(runner, step, meta)  # rotation, pointer
            return path
        # no checkpoint hook, or a mid-epoch save in an epoch-named run
        runner.save_checkpoint(
            out_dir,
            filename,
            meta=meta,
            by_epoch=epoch_end,
            save_optimizer=getattr(hook, 'save_optimizer', True),
            save_param_scheduler=getattr(hook, 'save_param_scheduler', True),
            backend_args=getattr(hook, 'backend_args', None)
            or dict(backend='atomic_local'))
        runner.message_hub.update_info('last_ckpt', path)
        if is_main_process():
            write_last_checkpoint(runner.work_dir, path)  # relative (issue 21)
        return path

    # --------------------------------------- mid-epoch checkpoints after a resume
    def _mid_epoch_checkpoints(self, runner, upto: int) -> List[str]:
        """``iter_N.pth`` (N <= ``upto``) of a run whose checkpoint hook names
        checkpoints by epoch: the mid-epoch saves of this hook."""
        hook = self._checkpoint_hook(runner)
        if hook is None or not hook.by_epoch or not osp.isdir(hook.out_dir or ''):
            return []
        found = (re.match(r'^iter_(\d+)\.pth$', f) for f in os.listdir(hook.out_dir))
        return [
            osp.join(hook.out_dir, m.group(0)) for m in found
            if m and int(m.group(1)) <= upto
        ]

    def before_train_epoch(self, runner) -> None:
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            return
        self._last_ckpt_before = runner.message_hub.get_info('last_ckpt')

    def _cleanup_after_epoch_checkpoint(self, runner) -> None:
        last = runner.message_hub.get_info('last_ckpt')
        if not last or last == self._last_ckpt_before or not re.match(
                r'^epoch_\d+\.pth$', osp.basename(last)):
            return
        for path in self._mid_epoch_checkpoints(runner, runner.iter):
            if is_main_process():
                os.remove(path)
            runner.logger.info(f'PreemptionHook: removed the mid-epoch checkpoint '
                               f'{path}, older than {last}.')
