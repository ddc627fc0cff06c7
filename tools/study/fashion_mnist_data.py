"""Fashion-MNIST (Xiao et al., 2017) on disk for MMPretrain's ``FashionMNIST``: the
data step of ``tools/study/fashion_mnist_study.py`` and of
``tools/study/fashion_mnist_scenes.py``, beside it.

Offline source: the Debian package ``dataset-fashion-mnist`` (the four gzipped IDX
files in ``/usr/share/datasets/fashion-mnist``). MMPretrain's ``FashionMNIST`` reads
the gunzipped files from ``data_root`` (``download=False``): 60,000 training images
(``test_mode=False``) and 10,000 test images (``test_mode=True``).
"""
import gzip
import os
import os.path as osp
import shutil
import struct
import subprocess
from typing import Dict, Optional

import numpy as np

DEBIAN_PACKAGE = 'dataset-fashion-mnist'
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
#: file -> (IDX magic number, number of items)
FILES = {
    'train-images-idx3-ubyte': (2051, 60000),
    'train-labels-idx1-ubyte': (2049, 60000),
    't10k-images-idx3-ubyte': (2051, 10000),
    't10k-labels-idx1-ubyte': (2049, 10000),
}
INSTALL_HINT = (f'apt-get install {DEBIAN_PACKAGE}  (as root; Debian/Ubuntu), or put '
                f'the four files {", ".join(f + ".gz" for f in FILES)} from '
                f'https://github.com/zalandoresearch/fashion-mnist into a folder and '
                f'pass it as --source')


def _install_debian_package() -> bool:
    """Try ``apt-get install -y dataset-fashion-mnist``; True when it worked."""
    if shutil.which('apt-get') is None or os.geteuid() != 0:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    done = subprocess.run(['apt-get', 'install', '-y', DEBIAN_PACKAGE],
                          env=env,
                          capture_output=True)
    return done.returncode == 0


def read_idx(path: str) -> np.ndarray:
    """The array of a gunzipped IDX file: (N, 28, 28) images or (N, ) labels, uint8."""
    with open(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    shape = np.frombuffer(data[4:4 + 4 * ndim], '>u4').astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def check_idx_file(path: str) -> int:
    """Number of items of an IDX file, after checking its header and size."""
    name = osp.basename(path)
    magic, count = FILES[name]
    with open(path, 'rb') as f:
        head = f.read(8)
    if len(head) < 8:
        raise ValueError(f'{path} is truncated (no IDX header)')
    got_magic, got_count = struct.unpack('>II', head)
    size = osp.getsize(path)
    expected = 8 + count if magic == 2049 else 16 + count * 28 * 28
    if (got_magic, got_count) != (magic, count) or size != expected:
        raise ValueError(
            f'{path}: IDX header ({got_magic}, {got_count}) and size {size} bytes, '
            f'expected ({magic}, {count}) and {expected} bytes: delete it and run '
            f'the preparation again')
    return count


def prepare_fashion_mnist(data_root: str,
                          source: Optional[str] = None,
                          install: bool = True) -> Dict[str, int]:
    """Gunzip Fashion-MNIST into ``data_root`` and check it.

    Args:
        data_root (str): Folder for the four gunzipped IDX files.
        source (str, optional): Folder with the gzipped files; None: the Debian
            package's folder (installed with apt-get when missing and ``install``).
        install (bool): Whether to try installing the Debian package.

    Returns:
        dict: file name -> number of items (60,000 / 10,000).

    Raises:
        FileNotFoundError: the data is not there and could not be installed; the
            message says what to run.
    """
    counts = {}
    if all(osp.isfile(osp.join(data_root, name)) for name in FILES):
        return {name: check_idx_file(osp.join(data_root, name)) for name in FILES}
    source = source or DEBIAN_DIR
    missing = [n for n in FILES if not osp.isfile(osp.join(source, n + '.gz'))]
    if missing and source == DEBIAN_DIR and install and _install_debian_package():
        missing = [n for n in FILES if not osp.isfile(osp.join(source, n + '.gz'))]
    if missing:
        raise FileNotFoundError(
            f'Fashion-MNIST not found: {", ".join(m + ".gz" for m in missing)} '
            f'missing in {source}. Install it with: {INSTALL_HINT}.')
    os.makedirs(data_root, exist_ok=True)
    for name in FILES:
        dst = osp.join(data_root, name)
        tmp = dst + '.tmp'
        with gzip.open(osp.join(source, name + '.gz'), 'rb') as fin, \
                open(tmp, 'wb') as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, dst)
        counts[name] = check_idx_file(dst)
    return counts
