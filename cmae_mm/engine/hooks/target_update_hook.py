"""Update the momentum target after each optimizer step, as the releases do."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

#: Message-hub key a hook sets to True in an iteration whose optimizer step was
#: skipped (the non-finite guard): the target is then not updated either.
STEP_SKIPPED_KEY = 'optimizer_step_skipped'


@HOOKS.register_module()
class TargetUpdateHook(Hook):
    """After every optimizer step, ``model.update_target(runner.iter,
    runner.max_iters)``: the EMA step of the target (:class:`MomentumTarget`).

    The CMAE release does this in ``MomentumUpdateHook.after_train_iter``
    (``cmae/core/hooks/momentum_update_hook.py``), ConMIM's right after
    ``loss_scaler`` in ``engine_for_pretraining.py``. Done after the step (not in
    ``loss()``), the target in a checkpoint is the one the next step uses, and
    computing a loss outside training changes nothing.

    No update happens when no optimizer step did: between the steps of gradient
    accumulation (``optim_wrapper.accumulative_counts``), and in an iteration whose
    step was skipped (message-hub info ``'optimizer_step_skipped'``, set by
    :class:`NonFiniteGuardHook` for a non-finite loss). A step that float16's
    ``GradScaler`` skips (finite loss, overflowing scaled gradients; the scale is
    halved) is not marked: the target is updated towards the unchanged online
    weights, as in both releases, whose EMA runs after every ``loss_scaler`` call
    (ConMIM ``engine_for_pretraining.py``; CMAE ``MomentumUpdateHook`` with
    MMEngine's ``AmpOptimWrapper``). The schedulers step as well (the iteration
    counts), so the cosine momentum and learning rate stay on the releases' curve.
    Under mixed precision (``MixedPrecisionOptimWrapper``) the update runs outside
    autocast (which covers only the forward) on float32 parameters (autocast never
    casts parameters); the target's BatchNorm running statistics are float32
    buffers, updated by its forward.
    The pretraining configs list it in ``custom_hooks``.

    The model's side is the API of
    :class:`~cmae_mm.models.utils.MomentumTargetSelfSupervisor` (CMAE, ConMIM and
    any algorithm built on it): ``before_train`` sets its
    ``target_update_hook_registered`` (without it, its ``forward(mode='loss')``
    refuses to train in a Runner) and ``after_train_iter`` calls its
    ``update_target(cur_iter, max_iters)``. The hook checks that protocol, not the
    class (engine does not import models), so any module with ``update_target``
    works with it.
    """

    priority = 'ABOVE_NORMAL'  # before checkpoint and logging hooks

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if not callable(getattr(model, 'update_target', None)):
            raise TypeError(
                f'TargetUpdateHook needs a model with a momentum target '
                f'(update_target(cur_iter, max_iters), as MomentumTargetSelfSupervisor '
                f'and its subclasses CMAE and ConMIM have); got '
                f'{type(model).__name__}. Remove the hook from custom_hooks.')
        model.target_update_hook_registered = True

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        wrapper = runner.optim_wrapper
        should_update = getattr(wrapper, 'should_update', None)
        if callable(should_update) and not should_update():
            return  # accumulating gradients: no optimizer step this iteration
        if runner.message_hub.get_info(STEP_SKIPPED_KEY, False):
            return
        self._model(runner).update_target(runner.iter, runner.max_iters)
