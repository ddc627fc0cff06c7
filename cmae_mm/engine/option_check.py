"""Options checked before anything is built: every keyword argument a config gives to
a class the Runner builds must be one that class takes (docs/reliability.md).

MMEngine builds most parts of a run late (dataloaders, optimizer and schedulers in
``Runner.train``, the test loop only when testing) and some take ``**kwargs`` they
pass on: ``CheckpointHook`` hands its unknown options to ``Runner.save_checkpoint``,
so ``default_hooks.checkpoint.intervl=4`` trains until the first save and dies
there. :func:`check_options` compares each config dict with the signature of the
class its ``type`` names (through MMEngine's registries and the config's
``default_scope``), following ``**kwargs`` up the class hierarchy, without building
anything. A class whose ``**kwargs`` go elsewhere, or a type that is not registered,
is left to MMEngine.
"""
import difflib
import inspect
import re
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from mmengine.hooks import CheckpointHook
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import (DATA_SAMPLERS, DATASETS, EVALUATOR, FUNCTIONS, HOOKS,
                               LOG_PROCESSORS, LOOPS, METRICS,
                               OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS,
                               PARAM_SCHEDULERS, DefaultScope, Registry)
from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop, Runner, TestLoop,
                             ValLoop)
from torch.utils.data import DataLoader

#: the arguments CheckpointHook gives ``Runner.save_checkpoint`` itself; its other
#: ``**kwargs`` go there too (mmengine/hooks/checkpoint_hook.py)
CHECKPOINT_HOOK_PASSES = ('out_dir', 'filename', 'file_client_args', 'save_optimizer',
                          'save_param_scheduler', 'meta', 'by_epoch', 'backend_args')
#: options of ``Runner.build_dataloader`` that are not DataLoader arguments
DATALOADER_EXTRA = ('num_batch_per_epoch', 'disable_subprocess_warning')
#: the ``paramwise_cfg`` keys DefaultOptimWrapperConstructor reads (subclasses may
#: read others and are not checked)
PARAMWISE_KEYS = ('custom_keys', 'bias_lr_mult', 'bias_decay_mult', 'norm_decay_mult',
                  'dwconv_decay_mult', 'flat_decay_mult', 'dcn_offset_lr_mult',
                  'bypass_duplicate')
CUSTOM_KEY_KEYS = ('lr_mult', 'decay_mult')

#: ``(names, note)``: the keyword arguments a class or function takes, and where its
#: ``**kwargs`` go when they are forwarded ('' when it takes none)
Accepted = Tuple[List[str], str]


def _names(fn: Callable, skip_first: bool) -> Tuple[List[str], bool]:
    """The parameters of ``fn`` that can be given by keyword, and whether it takes
    ``**kwargs``; ``([], True)`` when it has no signature to read."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return [], True
    if skip_first and params and params[0].kind != inspect.Parameter.VAR_POSITIONAL:
        params = params[1:]
    names = [
        p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                             inspect.Parameter.KEYWORD_ONLY)
    ]
    return names, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)


def method_arguments(cls: type, method: str) -> Tuple[List[str], bool]:
    """The keyword arguments ``cls.<method>`` takes, following ``**kwargs`` through
    the same method of each base class (where the override passes them on with
    ``super().<method>(..., **kwargs)``) until one that takes no ``**kwargs``; and
    whether ``**kwargs`` remain that go elsewhere (where, is unknown)."""
    names: List[str] = []
    found = False
    for klass in cls.__mro__:
        fn = vars(klass).get(method)
        if fn is None or klass is object:  # object.__init__ takes nothing
            continue
        found = True
        own, var_kw = _names(fn, skip_first=True)
        names += [n for n in own if n not in names]
        if not var_kw:
            return names, False
        if not _passes_kwargs_on(fn, method):
            return names, True
    return names, found


def _passes_kwargs_on(fn: Callable, method: str) -> bool:
    """Whether ``fn``'s source calls ``<base>.<method>(..., **kwargs)`` (e.g.
    ``super().__init__(**kwargs)``) with its own ``**kwargs``."""
    fn = inspect.unwrap(getattr(fn, '__func__', fn))
    try:
        var_kw = [
            p.name for p in inspect.signature(fn).parameters.values()
            if p.kind == inspect.Parameter.VAR_KEYWORD
        ]
        source = inspect.getsource(fn)
    except (OSError, TypeError, ValueError):
        return False
    if not var_kw:
        return False
    call = rf'\.{method}\((?:[^()]|\([^()]*\))*\*\*{var_kw[0]}\b'
    return re.search(call, source) is not None


def accepted_arguments(target: Callable,
                       runner_cls: type = Runner) -> Optional[Accepted]:
    """What ``target(**kwargs)`` accepts (:func:`method_arguments` of a class's
    ``__init__``); ``None`` where it takes any keyword, except for
    ``CheckpointHook``, whose ``**kwargs`` go to ``runner_cls.save_checkpoint``."""
    if not isinstance(target, type):
        names, var_kw = _names(target, skip_first=False)
        return None if var_kw else (names, '')
    names, var_kw = method_arguments(target, '__init__')
    if not var_kw:
        return names, ''
    if not issubclass(target, CheckpointHook):
        return None
    forwarded, var_kw = method_arguments(runner_cls, 'save_checkpoint')
    if var_kw:
        return None
    names += [n for n in forwarded if n not in CHECKPOINT_HOOK_PASSES + tuple(names)]
    return names, (f'its other keyword arguments go to '
                   f'{runner_cls.__name__}.save_checkpoint, which takes only the ones '
                   f'the hook gives it')


def _lookup(registry: Registry, type_, scope: Optional[str]) -> Optional[Callable]:
    """The class or function ``type_`` names in ``registry`` under ``scope`` (as
    MMEngine's build functions look it up), ``None`` where it is not registered."""
    if callable(type_):
        return type_
    if not isinstance(type_, str):
        return None
    with registry.switch_scope_and_registry(scope) as reg:
        try:
            return reg.get(type_)
        except Exception:  # a scope whose package is missing: MMEngine reports it
            return None


def _label(target: Callable) -> str:
    return getattr(target, '__name__', repr(target))


def check_kwargs(
    path: str,
    cfg: dict,
    target: Optional[Callable],
    runner_cls: type = Runner,
    filled: Sequence[str] = (),
    extra: Sequence[str] = (),
    ignore: Sequence[str] = ('type', '_scope_')
) -> List[str]:
    """The keys of ``cfg`` (found at config key ``path``) that ``target`` does not
    take, one message each. ``filled``: arguments the Runner gives (left out of the
    listing); ``extra``: keys the Runner consumes itself; ``ignore``: keys never
    passed on."""
    if target is None or not isinstance(cfg, dict):
        return []
    accepted = accepted_arguments(target, runner_cls)
    if accepted is None:
        return []
    names, note = accepted
    valid = set(names) | set(extra) | set(ignore)
    shown = [n for n in names if n not in filled] + list(extra)
    problems = []
    for key in cfg:
        if key in valid:
            continue
        close = difflib.get_close_matches(str(key), shown, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ''
        problems.append(
            f'{path}.{key}: {_label(target)} got an unexpected keyword argument '
            f"'{key}'{hint}; it takes {', '.join(shown) or 'no options'}"
            f'{" (" + note + ")" if note else ""}.')
    return problems


def _registered(path: str,
                cfg,
                registry: Registry,
                scope: Optional[str],
                runner_cls: type,
                default_type=None,
                **kwargs) -> List[str]:
    """:func:`check_kwargs` for a config dict built through ``registry``."""
    if not isinstance(cfg, dict):
        return []
    scope = cfg.get('_scope_', scope)
    target = _lookup(registry, cfg.get('type', default_type), scope)
    return check_kwargs(path, cfg, target, runner_cls, **kwargs)


def _items(path: str, cfg) -> Iterable[Tuple[str, dict]]:
    """``(path, dict)`` of a dict or of each dict in a list."""
    if isinstance(cfg, dict):
        yield path, cfg
    elif isinstance(cfg, (list, tuple)):
        for i, item in enumerate(cfg):
            if isinstance(item, dict):
                yield f'{path}.{i}', item


def check_hooks(cfg, scope, runner_cls) -> List[str]:
    problems = []
    for name, hook in (cfg.get('default_hooks') or {}).items():
        problems += _registered(
            f'default_hooks.{name}',
            hook,
            HOOKS,
            scope,
            runner_cls,
            extra=('priority', ))
    for path, hook in _items('custom_hooks', cfg.get('custom_hooks') or []):
        problems += _registered(
            path, hook, HOOKS, scope, runner_cls, extra=('priority', ))
    return problems


def check_loops(cfg, scope, runner_cls) -> List[str]:
    """``train_cfg`` (``type``, or ``by_epoch`` choosing MMEngine's epoch- or
    iteration-based loop), ``val_cfg``, ``test_cfg``."""
    problems = []
    loops = (('train_cfg', None, ('runner', 'dataloader')),
             ('val_cfg', ValLoop, ('runner', 'dataloader', 'evaluator')),
             ('test_cfg', TestLoop, ('runner', 'dataloader', 'evaluator')))
    for key, default, filled in loops:
        loop = cfg.get(key)
        if not isinstance(loop, dict):
            continue
        extra: Tuple[str, ...] = ()
        if 'type' not in loop and key == 'train_cfg':
            if 'by_epoch' not in loop:
                continue  # MMEngine asks for one of them
            default = EpochBasedTrainLoop if loop['by_epoch'] else IterBasedTrainLoop
            extra = ('by_epoch', )
        problems += _registered(
            key, loop, LOOPS, scope, runner_cls, default, filled=filled, extra=extra)
    return problems


def _function_kwargs(path: str, cfg, scope, runner_cls) -> List[str]:
    """``collate_fn`` / ``worker_init_fn``: MMEngine binds every key but ``type``
    to the function with ``functools.partial`` (a ``_scope_`` key included)."""
    if not isinstance(cfg, dict):
        return []
    type_ = cfg.get('type')
    target = FUNCTIONS.get(type_) if isinstance(type_, str) else type_
    if not callable(target):
        return []
    first = _names(target, skip_first=False)[0][:1]  # the batch / the worker id
    return check_kwargs(path, cfg, target, runner_cls, filled=first, ignore=('type', ))


def check_dataloaders(cfg, scope, runner_cls) -> List[str]:
    """``{train,val,test}_dataloader``: MMEngine's options plus the arguments of
    ``torch.utils.data.DataLoader``; their sampler, batch sampler, collate and
    worker-init functions and dataset (its own options, not the nested ones)."""
    problems = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not isinstance(loader, dict):
            continue
        problems += check_kwargs(
            key, loader, DataLoader, runner_cls, extra=DATALOADER_EXTRA, ignore=())
        problems += _registered(
            f'{key}.sampler',
            loader.get('sampler'),
            DATA_SAMPLERS,
            scope,
            runner_cls,
            filled=('dataset', 'seed'))
        problems += _registered(
            f'{key}.batch_sampler',
            loader.get('batch_sampler'),
            DATA_SAMPLERS,
            scope,
            runner_cls,
            filled=('sampler', 'batch_size'))
        problems += _registered(f'{key}.dataset', loader.get('dataset'), DATASETS,
                                scope, runner_cls)
        for fn in ('collate_fn', 'worker_init_fn'):
            problems += _function_kwargs(f'{key}.{fn}', loader.get(fn), scope,
                                         runner_cls)
    return problems


def check_optim_wrapper(cfg, scope, runner_cls) -> List[str]:
    """``optim_wrapper`` as MMEngine's ``DefaultOptimWrapperConstructor`` (or a
    subclass) reads it: the wrapper, its ``optimizer`` and, for the default
    constructor, ``paramwise_cfg``. Other constructors are not checked."""
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict):
        return []
    optimizer = wrapper.get('optimizer')
    if not isinstance(optimizer, dict) and 'constructor' not in wrapper:
        return []  # built objects, or several wrappers for a custom constructor
    constructor = _lookup(OPTIM_WRAPPER_CONSTRUCTORS,
                          wrapper.get('constructor', DefaultOptimWrapperConstructor),
                          scope)
    if not (isinstance(constructor, type)
            and issubclass(constructor, DefaultOptimWrapperConstructor)):
        return []
    problems = _registered(
        'optim_wrapper',
        wrapper,
        OPTIM_WRAPPERS,
        scope,
        runner_cls,
        'OptimWrapper',
        filled=('optimizer', ),
        extra=('constructor', 'paramwise_cfg'))
    if isinstance(optimizer, dict):
        target = _lookup(OPTIMIZERS, optimizer.get('type'),
                         optimizer.get('_scope_', scope))
        first = _names(target, skip_first=False)[0][:1] if target else []
        problems += check_kwargs(
            'optim_wrapper.optimizer', optimizer, target, runner_cls, filled=first)
    paramwise = wrapper.get('paramwise_cfg')
    if constructor is DefaultOptimWrapperConstructor and isinstance(paramwise, dict):
        problems += _known_keys('optim_wrapper.paramwise_cfg', paramwise,
                                PARAMWISE_KEYS, 'DefaultOptimWrapperConstructor')
        for name, mults in (paramwise.get('custom_keys') or {}).items():
            if isinstance(mults, dict):
                problems += _known_keys(
                    f"optim_wrapper.paramwise_cfg.custom_keys['{name}']", mults,
                    CUSTOM_KEY_KEYS, 'DefaultOptimWrapperConstructor')
    return problems


def _known_keys(path: str, cfg: dict, keys: Sequence[str], reader: str) -> List[str]:
    """Keys of a dict that is read, not passed as arguments, outside ``keys``."""
    problems = []
    for key in cfg:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
            problems.append(f"{path}.{key}: {reader} does not read '{key}'{hint}; it "
                            f"reads {', '.join(keys)}.")
    return problems


def check_param_schedulers(cfg, scope, runner_cls) -> List[str]:
    """``param_scheduler``: a dict, a list, or a dict of those per optimizer."""
    schedulers = cfg.get('param_scheduler')
    groups = [('param_scheduler', schedulers)]
    if isinstance(schedulers, dict) and 'type' not in schedulers:
        groups = [(f'param_scheduler.{k}', v) for k, v in schedulers.items()]
    problems = []
    for prefix, group in groups:
        for path, scheduler in _items(prefix, group):
            problems += _registered(
                path,
                scheduler,
                PARAM_SCHEDULERS,
                scope,
                runner_cls,
                filled=('optimizer', 'epoch_length'),
                extra=('convert_to_iter_based', ))
    return problems


def check_evaluators(cfg, scope, runner_cls) -> List[str]:
    """``val_evaluator`` / ``test_evaluator``: an ``Evaluator`` dict (with
    ``metrics``), one metric or a list of metrics."""
    problems = []
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(key)
        metrics, prefix = evaluator, key
        if isinstance(evaluator, dict) and 'metrics' in evaluator:
            problems += _registered(key, evaluator, EVALUATOR, scope, runner_cls,
                                    'Evaluator')
            metrics, prefix = evaluator['metrics'], f'{key}.metrics'
        for path, metric in _items(prefix, metrics):
            problems += _registered(path, metric, METRICS, scope, runner_cls)
    return problems


def check_log_processor(cfg, scope, runner_cls) -> List[str]:
    return _registered('log_processor', cfg.get('log_processor'), LOG_PROCESSORS, scope,
                       runner_cls, 'LogProcessor')


CHECKS = (check_hooks, check_loops, check_dataloaders, check_optim_wrapper,
          check_param_schedulers, check_evaluators, check_log_processor)


def find_option_errors(cfg, runner_cls: type = Runner) -> List[str]:
    """Every option of ``cfg`` (a ``Config`` or dict) that the class it is given to
    does not take, as ``'key.path: Class got an unexpected keyword argument ...'``
    messages. Nothing is built; types are looked up in the config's
    ``default_scope`` (``_scope_`` keys respected)."""
    scope = cfg.get('default_scope', 'mmengine')
    with DefaultScope.overwrite_default_scope(scope):
        return [p for check in CHECKS for p in check(cfg, scope, runner_cls)]


def check_options(cfg, runner_cls: type = Runner) -> None:
    """Raise ``TypeError`` listing the problems of :func:`find_option_errors`, before
    anything is built or trained."""
    problems = find_option_errors(cfg, runner_cls)
    if problems:
        raise TypeError(
            f'{len(problems)} config option(s) would be passed to a class that does '
            f'not take them (found before the run started; nothing was trained):\n  ' +
            '\n  '.join(problems) + '\nCorrect or remove these keys in the config '
            'or in --cfg-options.')
