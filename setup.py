import os.path as osp
from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'cmae_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    with open(osp.join(osp.dirname(__file__), 'requirements', name)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


setup(
    name='cmae_mm',
    version=read_version(),
    description='Contrastive masked image modeling (CMAE, ConMIM) for OpenMMLab',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['cmae_mm', 'cmae_mm.*']),
    python_requires='>=3.9',
    install_requires=(read_requirements('torch.txt') +
                      read_requirements('mminstall.txt') +
                      read_requirements('runtime.txt')),
    extras_require={'tests': read_requirements('tests.txt')},
    license='Apache License 2.0',
    zip_safe=False,
)
