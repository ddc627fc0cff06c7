"""Randomness that survives ranks, DataLoader workers and resumes.

MMEngine seeds each process once (``randomness=dict(seed, diff_rank_seed)``) and each
DataLoader worker once, when it starts (``mmengine.dataset.worker_init_fn``: seed
``num_workers * rank + worker_id + seed``, the same at every epoch). A checkpoint holds
no random state, so a resumed run restarts every stream: persistent workers (and the
main process when ``num_workers=0``) replay epoch 0's draws instead of epoch ``k``'s,
and non-persistent workers draw the same numbers in every epoch.

Here every random draw that matters is derived instead of carried
(docs/training.md, "Randomness across ranks and resumes"):

- :func:`derive_seed` hashes integers (run seed, rank, epoch, position, ...) into one
  63-bit seed (BLAKE2b, Python's ``hashlib``): equal keys, equal seeds; nearby keys,
  unrelated seeds;
- :class:`SeededSampler` wraps the training sampler and hands each index out with its
  key ``(sampler seed, rank, epoch, position in this rank's stream)``;
- :class:`SeededDataset` wraps the training dataset: for such a key it seeds
  ``random``, ``numpy.random`` and torch's CPU generator from it and runs the inner
  dataset's ``__getitem__`` (loading and the whole pipeline). A sample's crops,
  flips, colour changes and ConMIM's masks are thus a function of the run's seed and
  of where the sample sits in the stream, whatever the number of workers, their
  persistence or a resume in between.
- :func:`seed_train_samples` puts both wrappers around a ``train_dataloader`` config
  (``CheckedRunner`` does it when the config sets ``train_sample_seeding = True``).
"""
import hashlib
import random
import struct
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dist import get_rank, sync_random_seed
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import Dataset, Sampler, get_worker_info

_MASK64 = (1 << 64) - 1


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integers (each taken modulo 2**64), e.g.
    ``(seed, rank, step)``: the BLAKE2b hash of their little-endian bytes, the same
    in every process and Python session."""
    data = struct.pack(f'<{len(keys)}Q', *(int(k) & _MASK64 for k in keys))
    digest = hashlib.blake2b(data, digest_size=8, person=b'cmae_mm').digest()
    return int.from_bytes(digest, 'little') >> 1


def seeded_generator(cache: dict, device: torch.device, seed: int) -> torch.Generator:
    """The generator on ``device`` kept in ``cache`` (one per device, made once),
    re-seeded with ``seed``: seeding happens on the host, so drawing on a GPU needs
    no host-device synchronisation."""
    key = str(device)
    if key not in cache:
        cache[key] = torch.Generator(device=device)
    return cache[key].manual_seed(seed)


@DATA_SAMPLERS.register_module()
class SeededSampler(Sampler):
    """A sampler whose indices carry the key of their random draws.

    Yields ``(index, (seed, rank, epoch, position))`` for each index of the inner
    sampler; ``position`` counts this rank's samples since the last ``set_epoch``
    (an ``InfiniteSampler``'s stream never restarts, so its positions run on).
    :class:`SeededDataset` turns the key into the sample's seed.

    Args:
        sampler (dict | Sampler): The inner sampler (e.g. ``DefaultSampler``,
            ``InfiniteSampler``); a dict is built with ``dataset`` and ``seed``.
        dataset (Dataset): The dataset (MMEngine's ``build_dataloader`` passes it).
        seed (int, optional): As for MMEngine's samplers; the key uses the inner
            sampler's ``seed`` (the same on every rank, MMEngine's
            ``sync_random_seed`` when None), else this one, else a synced one.
    """

    def __init__(self,
                 sampler: Union[dict, Sampler],
                 dataset: Dataset,
                 seed: Optional[int] = None) -> None:
        if isinstance(sampler, dict):
            sampler = DATA_SAMPLERS.build(
                sampler, default_args=dict(dataset=dataset, seed=seed))
        self.sampler = sampler
        self.dataset = dataset
        inner_seed = getattr(sampler, 'seed', seed)
        self.seed = int(sync_random_seed() if inner_seed is None else inner_seed)
        self.rank = get_rank()
        self.epoch = 0

    def __iter__(self) -> Iterator[Tuple[Any, Tuple[int, int, int, int]]]:
        epoch = self.epoch
        for position, index in enumerate(self.sampler):
            yield index, (self.seed, self.rank, epoch, position)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the keys and of the inner sampler (its shuffle order)."""
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)


@DATASETS.register_module()
class SeededDataset(Dataset):
    """Runs each ``__getitem__`` of a dataset under a seed derived from its key.

    An item ``(index, key)`` (from :class:`SeededSampler`) seeds ``random``,
    ``numpy.random`` and torch's CPU generator with :func:`derive_seed` ``(*key)``
    and returns ``dataset[index]``. In the main process (``num_workers=0``) the three
    states are restored afterwards, so the process's own streams (e.g. dropout's) are
    untouched. A plain index is passed through unseeded. Other attributes
    (``pipeline``, ``metainfo``, ``full_init``, ...) are the inner dataset's.

    Cost per sample, measured on a 2-core CPU machine running 3x oversubscribed
    (so an upper bound): 0.16 ms in a worker (seeding NumPy is the most of it), 1 ms
    in the main process (saving and restoring NumPy's state too); loading a JPEG and
    its crops take several ms.

    Args:
        dataset (dict | Dataset): The inner dataset, or its config.
    """

    def __init__(self, dataset: Union[dict, Dataset]) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        self.dataset = dataset

    def __getattr__(self, name: str) -> Any:
        if name == 'dataset':  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Any) -> Any:
        if not isinstance(item, tuple):
            return self.dataset[item]
        index, key = item
        if get_worker_info() is not None:  # a worker: its streams are the data's
            _seed_all(derive_seed(*key))
            return self.dataset[index]
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        _seed_all(derive_seed(*key))
        try:
            return self.dataset[index]
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])


def _seed_all(seed: int) -> None:
    """Seed ``random``, ``numpy.random`` (both 32-bit halves) and torch's CPU
    generator."""
    random.seed(seed)
    np.random.seed((seed & 0xFFFFFFFF, seed >> 32))
    torch.default_generator.manual_seed(seed)


def seed_train_samples(dataloader: dict) -> Optional[str]:
    """Wrap a ``train_dataloader`` config in place: ``dataset`` in
    :class:`SeededDataset`, ``sampler`` in :class:`SeededSampler`.

    Returns None when wrapped (or already wrapped), else why it cannot be: a
    ``batch_sampler`` (MMDetection's ``AspectRatioBatchSampler`` reads the sampler's
    indices as plain integers) or a dataset / sampler given as an object.
    """
    dataset, sampler = dataloader.get('dataset'), dataloader.get('sampler')
    if dataloader.get('batch_sampler') is not None:
        return 'it has a batch_sampler, which needs plain indices'
    if not isinstance(dataset, dict) or not isinstance(sampler, dict):
        return 'its dataset and sampler are not both configs (dicts)'
    if sampler.get('type') in ('SeededSampler', SeededSampler):
        return None
    dataloader['dataset'] = dict(type='SeededDataset', dataset=dataset)
    dataloader['sampler'] = dict(type='SeededSampler', sampler=sampler)
    return None
