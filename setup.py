"""cmae_mm: contrastive masked image modeling (CMAE, ConMIM) for OpenMMLab.

``pip install -e .`` installs the plugin into an existing OpenMMLab environment with
compatible version ranges (requirements/runtime.txt, requirements/mminstall.txt);
extras ``[seg]``, ``[det]``, ``[tensorboard]``, ``[tests]``, ``[all]``. The exact set
verified together is requirements/constraints.txt, which tools/setup_env.sh installs.
"""
import os
import os.path as osp
import platform
import shutil
import sys
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'cmae_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


def add_mim_extension() -> None:
    """Ship configs, tools and model-index.yml as ``cmae_mm/.mim`` package data, as
    MMPretrain's setup.py does, so that ``mim train cmae_mm CONFIG`` finds them.

    ``cmae_mm/.mim/*`` are symbolic links to the originals (copies on Windows, where
    links need privileges): an editable install sees the live files, and building a
    wheel or sdist follows the links and packs the files themselves.
    """
    if not any(
            cmd in sys.argv for cmd in ('develop', 'editable_wheel', 'sdist',
                                        'bdist_wheel', 'build', 'install')):
        return
    mim_path = osp.join(HERE, 'cmae_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src, dst = osp.join(HERE, name), osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if platform.system() != 'Windows':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    seg, det, tests, tensorboard = (
        read_requirements(f)
        for f in ('seg.txt', 'det.txt', 'tests.txt', 'tensorboard.txt'))
    setup(
        name='cmae_mm',
        version=read_version(),
        description='Contrastive masked image modeling (CMAE, ConMIM) for OpenMMLab',
        long_description=open(osp.join(HERE, 'README.md')).read(),
        long_description_content_type='text/markdown',
        keywords='self-supervised learning, masked image modeling, contrastive '
        'learning, OpenMMLab',
        packages=find_packages(include=['cmae_mm', 'cmae_mm.*']),
        include_package_data=True,
        package_data={'cmae_mm': ['.mim/**/*', '.mim/*']},
        python_requires='>=3.9',
        install_requires=(read_requirements('runtime.txt') +
                          read_requirements('mminstall.txt')),
        extras_require={
            'seg': seg,
            'det': det,
            'tests': tests + tensorboard,
            'tensorboard': tensorboard,
            'all': seg + det + tests + tensorboard,
        },
        classifiers=[
            'License :: OSI Approved :: Apache Software License',
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
        license='Apache License 2.0',
        zip_safe=False)
