"""The fingerprint of a training run (docs/reliability.md): every checkpoint
``CheckedRunner`` saves carries, in ``meta['run_fingerprint']``, the run id (made at a
fresh start, kept across resumes), hashes of the model and data parts of the config
and the seed; the work dir records its run in ``run_fingerprint.json``. ``--resume``
compares them (:func:`fingerprint_mismatch`) before any training step."""
import hashlib
import json
import re
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config


def flatten(obj, prefix: str = '') -> Dict[str, object]:
    """``{'a.b.0.c': value}`` of nested dicts (and lists of dicts)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f'{prefix}{k}.'))
        return out
    if isinstance(obj, (list, tuple)) and any(isinstance(v, dict) for v in obj):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f'{prefix}{i}.'))
        return out
    return {prefix[:-1]: obj}


#: the key of a checkpoint's ``meta`` holding :meth:`CheckedRunner.run_fingerprint`
FINGERPRINT_KEY = 'run_fingerprint'
#: the work dir's record of the run it holds (written when a training run starts)
RUN_RECORD = 'run_fingerprint.json'
#: dataloader options that change speed, not the data
LOADER_ONLY = ('num_workers', 'persistent_workers', 'pin_memory', 'prefetch_factor')


def _without(obj, keys: Tuple[str, ...]):
    """``obj`` (nested dicts / lists) without the dict entries named ``keys``."""
    if isinstance(obj, dict):
        return {k: _without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, (list, tuple)):
        return [_without(v, keys) for v in obj]
    return obj


def model_part(cfg) -> dict:
    """The options that make the model: ``model`` without its ``data_preprocessor``
    (:func:`data_part`) and the ``init_cfg`` entries (a resume replaces the
    initial weights)."""
    model = dict(cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg).get('model')
    model = {k: v for k, v in (model or {}).items() if k != 'data_preprocessor'}
    return _without(model, ('init_cfg', ))


def data_part(cfg) -> dict:
    """The options that make the training data: ``train_dataloader`` without its
    speed options (:data:`LOADER_ONLY`), and ``model.data_preprocessor``."""
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    loader = cfg.get('train_dataloader') or {}
    preprocessor = (cfg.get('model') or {}).get('data_preprocessor')
    return {
        'train_dataloader': {
            k: v
            for k, v in loader.items() if k not in LOADER_ONLY
        },
        'model.data_preprocessor': preprocessor
    }


def _stable(obj) -> str:
    """A process-independent text for what JSON cannot hold (classes, functions)."""
    name = getattr(obj, '__qualname__', None)
    if name is not None:
        return f'{getattr(obj, "__module__", "")}.{name}'
    return re.sub(r' at 0x[0-9a-f]+', '', repr(obj))


def config_hash(part) -> str:
    """A short hash of a config part (:func:`model_part`, :func:`data_part`)."""
    text = json.dumps(part, sort_keys=True, default=_stable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_options(old: dict, new: dict, prefix: str, n: int = 5) -> str:
    """``'key: old -> new; ...'`` of the differing entries (a few); ``prefix``
    (e.g. ``'model.'``) starts every key."""
    old, new = flatten(old, prefix), flatten(new, prefix)
    changed = [
        f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in sorted(set(old) | set(new))
        if json.dumps(old.get(k), default=_stable) != json.dumps(
            new.get(k), default=_stable)
    ]
    more = f'; ... ({len(changed)} in all)' if len(changed) > n else ''
    return '; '.join(changed[:n]) + more


def fingerprint_mismatch(saved: dict,
                         now: dict,
                         record: Optional[dict],
                         check_seed: bool,
                         saved_cfg: Optional[str] = None,
                         cfg=None) -> Tuple[List[str], bool]:
    """``(mismatches, foreign)`` between a checkpoint's fingerprint ``saved`` and
    this run's ``now``. The run id is compared with the work dir's ``record`` (none:
    not compared); the seed only when the config sets one (``check_seed``).
    ``foreign``: another run (run id) or another model (model hash); a changed seed
    or data config within the run is named, not refused. With the checkpoint's
    ``saved_cfg`` text and this ``cfg``, the changed options are listed."""
    problems, foreign = [], False
    if record is not None and saved.get('run_id') != record.get('run_id'):
        problems.append(f"run id: checkpoint {saved.get('run_id')}, this work dir's "
                        f"run {record.get('run_id')} ({RUN_RECORD})")
        foreign = True
    if check_seed and saved.get('seed') != now.get('seed'):
        problems.append(f"seed: checkpoint {saved.get('seed')}, this config "
                        f"{now.get('seed')}")
    old_cfg = None
    if saved_cfg is not None and cfg is not None:
        try:
            old_cfg = Config.fromstring(saved_cfg, file_format='.py')
        except Exception:  # an unreadable saved config: hashes only
            old_cfg = None
    for key, part, what, prefix in (('model', model_part, 'model', 'model.'),
                                    ('data', data_part, 'training data', '')):
        if saved.get(key) == now.get(key):
            continue
        detail = changed_options(part(old_cfg), part(cfg),
                                 prefix) if old_cfg is not None else ''
        problems.append(f'{what} config: hash {saved.get(key)} in the checkpoint, '
                        f'{now.get(key)} here' + (f' ({detail})' if detail else ''))
        foreign = foreign or key == 'model'
    return problems, foreign
