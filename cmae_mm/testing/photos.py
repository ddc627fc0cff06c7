"""Real photographs shipped inside scikit-image, for the demo and the tests.

No dataset can be downloaded on the project's machines, so the demo and the tests build
small datasets, in the real on-disk formats, from these photographs.
"""
import os
import os.path as osp
from typing import Dict, List

import numpy as np

# RGB photographs of natural scenes in ``skimage/data`` (name -> file).
PHOTO_FILES = {
    'astronaut': 'astronaut.png',
    'chelsea': 'chelsea.png',
    'coffee': 'coffee.png',
    'rocket': 'rocket.jpg',
    'hubble_deep_field': 'hubble_deep_field.jpg',
    'ihc': 'ihc.png',
    'motorcycle_left': 'motorcycle_left.png',
    'motorcycle_right': 'motorcycle_right.png',
    'retina': 'retina.jpg',
}


def skimage_data_dir() -> str:
    try:
        import skimage
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError('scikit-image is needed for the bundled photographs: '
                          'run `bash tools/setup_env.sh`.') from e
    return osp.join(osp.dirname(skimage.__file__), 'data')


def load_photos(names: List[str] = None) -> Dict[str, np.ndarray]:
    """Return ``{name: uint8 array (H, W, 3), RGB}`` for the bundled photographs."""
    import cv2
    root = skimage_data_dir()
    names = list(PHOTO_FILES) if names is None else names
    photos = {}
    for name in names:
        if name not in PHOTO_FILES:
            raise KeyError(f'Unknown photo {name!r}; known: {sorted(PHOTO_FILES)}')
        path = osp.join(root, PHOTO_FILES[name])
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f'{path} is missing from the scikit-image install.')
        photos[name] = np.ascontiguousarray(bgr[..., ::-1])
    return photos


def write_photo_folder(out_dir: str, names: List[str] = None) -> List[str]:
    """Write the photographs as JPEG files into ``out_dir``; return the file paths."""
    import cv2
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, rgb in load_photos(names).items():
        path = osp.join(out_dir, f'{name}.jpg')
        cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths
