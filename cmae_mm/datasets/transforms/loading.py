"""Image loading that detects broken files instead of crashing or using garbage."""
import multiprocessing
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS


def image_fault(data: bytes) -> Optional[str]:
    """Why ``data`` is not a complete image file, or None.

    Cheap structural checks that OpenCV does not make: an empty file; a JPEG without
    its end-of-image marker in the last 4 KiB (a truncated JPEG, which OpenCV decodes
    with grey or garbage rows and only a warning on stderr); a PNG without its IEND
    chunk. Whether the bytes decode at all is checked by the caller.
    """
    if not data:
        return 'empty file (0 bytes)'
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-4096:]:
        return 'truncated JPEG (no end-of-image marker)'
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-32:]:
        return 'truncated PNG (no IEND chunk)'
    return None


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(LoadImageFromFile):
    """MMCV's ``LoadImageFromFile`` with strict decoding and a policy for bad files.

    A file that is empty, truncated (JPEG without end-of-image marker, PNG without
    IEND) or does not decode is a *bad image*:

    - ``on_error='skip'`` (default): a warning names the file, the reason and the
      running count, the file is appended to ``bad_image_log`` when set
      (:class:`~cmae_mm.engine.runner.CheckedRunner` sets
      ``WORK_DIR/bad_images.txt``), and the transform returns None, so that MMEngine's
      dataset draws another sample. :class:`~cmae_mm.engine.hooks.DataFaultHook`
      stops the run, listing the files, when more than ``max_bad_fraction`` of the
      images a process reads are bad (the data is then broken, not a file);
    - ``on_error='raise'``: the first bad image stops the run, naming it.

    The running count is shared by the DataLoader worker processes (forked from the
    process that built the dataset); each distributed rank counts its own share.

    Args:
        on_error (str): ``'skip'`` or ``'raise'``. Defaults to ``'skip'``.
        max_bad_fraction (float): Fraction of bad images tolerated with ``'skip'``.
            Defaults to 0.01.
        bad_image_log (str, optional): File that bad images are appended to.
        **kwargs: MMCV ``LoadImageFromFile`` arguments (``color_type``,
            ``imdecode_backend``, ``backend_args``, ...).
    """

    def __init__(self,
                 on_error: str = 'skip',
                 max_bad_fraction: float = 0.01,
                 bad_image_log: Optional[str] = None,
                 **kwargs) -> None:
        if on_error not in ('skip', 'raise'):
            raise ValueError(f"SafeLoadImageFromFile: on_error must be 'skip' or "
                             f"'raise', got {on_error!r}.")
        if not 0 <= max_bad_fraction <= 1:
            raise ValueError('SafeLoadImageFromFile: max_bad_fraction must be in '
                             f'[0, 1], got {max_bad_fraction}.')
        kwargs.setdefault('ignore_empty', False)
        super().__init__(**kwargs)
        self.on_error = on_error
        self.max_bad_fraction = max_bad_fraction
        self.bad_image_log = bad_image_log
        self._seen = set()  # bad files this process has reported
        try:  # shared with forked DataLoader workers
            self._count = multiprocessing.Value('i', 0)
        except (OSError, PermissionError):  # no shared memory available
            self._count = None
            self._local_count = 0

    @property
    def bad_count(self) -> int:
        """Bad files reported so far by this process and its workers (a file met by
        two workers counts twice; ``bad_image_log`` lists each report)."""
        return self._count.value if self._count is not None else self._local_count

    def _increment(self) -> int:
        if self._count is None:
            self._local_count += 1
            return self._local_count
        with self._count.get_lock():
            self._count.value += 1
            return self._count.value

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            data = fileio.get(filename, backend_args=self.backend_args)
            reason = image_fault(data)
            img = None
            if reason is None:
                img = mmcv.imfrombytes(
                    data, flag=self.color_type, backend=self.imdecode_backend)
                if img is None or img.size == 0:
                    reason = 'cannot be decoded as an image'
        except Exception as e:  # unreadable file, decoder error
            reason = f'cannot be read or decoded ({type(e).__name__}: {e})'
        if reason is not None:
            return self._bad(filename, reason)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _bad(self, filename: str, reason: str) -> None:
        if self.on_error == 'raise':
            raise OSError(
                f'Bad image {filename}: {reason}. Remove or replace it (list all with '
                f'tools/analysis/check_dataset.py CONFIG), or load with '
                f"SafeLoadImageFromFile(on_error='skip') to skip such files.")
        if filename in self._seen:  # this process already reported it
            return None
        self._seen.add(filename)
        count = self._increment()
        if self.bad_image_log:
            with open(self.bad_image_log, 'a') as f:
                f.write(f'{filename}\t{reason}\n')
        print_log(
            f'Skipped bad image {filename}: {reason} ({count} bad image(s) so far'
            f'{f", listed in {self.bad_image_log}" if self.bad_image_log else ""}).',
            logger='current',
            level=30)
        return None

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, on_error={self.on_error!r}, '
                f'max_bad_fraction={self.max_bad_fraction})')
