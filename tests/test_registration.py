"""`import cmae_mm` registers every module into the registry of the framework using it."""
import subprocess
import sys

import pytest

EXPECTED = {
    ('mmpretrain', 'MODELS'): [
        'CMAE', 'CMAEViT', 'CMAEFeatureDecoder', 'ConMIM', 'TokenNonLinearNeck',
        'DenoisingContrastiveLoss', 'TransferViT', 'TransferBEiTViT'],
    ('mmpretrain', 'TRANSFORMS'): ['PixelShift'],
    ('mmseg', 'MODELS'): ['TransferViT', 'TransferBEiTViT'],
    ('mmseg', 'OPTIM_WRAPPER_CONSTRUCTORS'): ['BackboneLayerDecayOptimWrapperConstructor'],
    ('mmdet', 'MODELS'): ['ViTDet', 'SimpleFPN'],
    ('mmdet', 'HOOKS'): ['Fp16CompressionHook'],
    ('mmdet', 'OPTIM_WRAPPER_CONSTRUCTORS'): ['BackboneLayerDecayOptimWrapperConstructor'],
    ('mmengine', 'WEIGHT_INITIALIZERS'): ['PretrainedEncoder'],
    ('mmengine', 'MODEL_WRAPPERS'): ['CPUDistributedDataParallel'],
}


def _registry(package: str, name: str):
    import importlib
    return getattr(importlib.import_module(f'{package}.registry'), name)


@pytest.mark.parametrize('package,registry', sorted(EXPECTED))
def test_modules_are_registered(package, registry):
    import cmae_mm  # noqa: F401
    reg = _registry(package, registry)
    for name in EXPECTED[(package, registry)]:
        obj = reg.get(name)
        assert obj is not None, f'{name} is not in {package}.{registry}'
        assert obj.__module__.startswith('cmae_mm.'), (name, obj.__module__)


def test_layernorm2d_is_reused_for_mmdet():
    """MMDetection 3.3.0 has no LN2d; cmae_mm registers MMPretrain's, not a copy."""
    import cmae_mm  # noqa: F401
    from mmdet.registry import MODELS
    from mmpretrain.models.utils.norm import LayerNorm2d
    assert MODELS.get('LN2d') is LayerNorm2d


def test_every_cmae_mm_registration_is_expected():
    """Nothing registers by accident (e.g. a helper class defined in a module)."""
    import cmae_mm  # noqa: F401
    found = set()
    for package, registry in EXPECTED:
        reg = _registry(package, registry)
        for name, obj in reg.module_dict.items():
            if getattr(obj, '__module__', '').startswith('cmae_mm.'):
                found.add((package, registry, name))
    expected = {(p, r, n) for (p, r), names in EXPECTED.items() for n in names}
    assert found == expected


def test_custom_imports_in_a_config_registers_everything(tmp_path):
    """What a user's config does: custom_imports, then build by name."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)\n"
                   "transform = dict(type='PixelShift', view_size=32, max_shift=3)\n")
    code = ('import sys\n'
            'from mmengine.config import Config\n'
            'cfg = Config.fromfile(sys.argv[1])\n'
            'from mmpretrain.registry import TRANSFORMS\n'
            't = TRANSFORMS.build(cfg.transform)\n'
            'print(type(t).__module__)\n')
    out = subprocess.run([sys.executable, '-c', code, str(cfg)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('cmae_mm.datasets.transforms.pixel_shift')


def test_version_in_one_place(repo_root):
    import cmae_mm
    from cmae_mm.version import __version__
    assert cmae_mm.__version__ == __version__
    out = subprocess.run([sys.executable, 'setup.py', '--version'], cwd=repo_root,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == __version__
