"""`import cmae_mm` registers every module into the registry of the framework using
it."""

import pytest

EXPECTED = {
    ('mmpretrain', 'MODELS'): [
        'CMAE', 'CMAEViT', 'CMAEFeatureDecoder', 'ConMIM', 'ConMIMViT',
        'TokenNonLinearNeck', 'DenoisingContrastiveLoss', 'TransferViT',
        'TransferBEiTViT', 'MultiViewDataPreprocessor'
    ],
    ('mmpretrain', 'BATCH_AUGMENTS'): [
        'BatchRandomFlip', 'BatchShiftedCrop', 'BatchColorJitter',
        'BatchRandomGrayscale', 'BatchGaussianBlur', 'BatchSolarize'
    ],
    ('mmpretrain', 'TRANSFORMS'): [
        'PixelShift', 'ConMIMBlockMaskGenerator', 'SafeLoadImageFromFile', 'GrayToBGR',
        'FastColorJitter', 'FastRandomResizedCrop', 'FastRandomGrayscale'
    ],
    ('mmseg', 'MODELS'): ['TransferViT', 'TransferBEiTViT'],
    ('mmdet', 'MODELS'): ['ViTDet', 'SimpleFPN', 'TransferBEiTViT'],
    # generic parts live in MMEngine's root registries: every scope finds them
    ('mmengine', 'HOOKS'): [
        'Fp16CompressionHook', 'TargetUpdateHook', 'NonFiniteGuardHook',
        'SafeCheckpointHook', 'DataFaultHook', 'PreemptionHook'
    ],
    ('mmengine', 'RUNNERS'): ['CheckedRunner'],
    ('mmengine', 'LOOPS'): ['KNNValLoop'],
    ('mmengine', 'OPTIM_WRAPPER_CONSTRUCTORS'):
    ['BackboneLayerDecayOptimWrapperConstructor'],
    ('mmengine', 'OPTIM_WRAPPERS'): ['MixedPrecisionOptimWrapper'],
    ('mmengine', 'WEIGHT_INITIALIZERS'): ['PretrainedEncoder'],
    ('mmengine', 'MODEL_WRAPPERS'): ['CPUDistributedDataParallel'],
    ('mmengine', 'DATASETS'): ['SeededDataset'],
    ('mmengine', 'DATA_SAMPLERS'): ['SeededSampler'],
}
#: README's registry column -> the framework's package
FRAMEWORKS = {
    'MMEngine': 'mmengine',
    'MMPretrain': 'mmpretrain',
    'MMSeg': 'mmseg',
    'MMDet': 'mmdet'
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


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmseg', 'mmdet'])
def test_root_registrations_are_found_from_every_scope(scope):
    """Hooks and optimizer constructors registered once, in MMEngine's root registry,
    are what a config of any framework gets by name."""
    import cmae_mm  # noqa: F401
    from cmae_mm.engine.hooks import Fp16CompressionHook
    from cmae_mm.engine.optimizers import BackboneLayerDecayOptimWrapperConstructor
    child_hooks = _registry(scope, 'HOOKS')
    child_ctors = _registry(scope, 'OPTIM_WRAPPER_CONSTRUCTORS')
    assert child_hooks.get('Fp16CompressionHook') is Fp16CompressionHook
    assert (child_ctors.get('BackboneLayerDecayOptimWrapperConstructor')
            is BackboneLayerDecayOptimWrapperConstructor)


def test_layernorm2d_is_reused_for_mmdet():
    """MMDetection 3.3.0 has no LN2d; cmae_mm registers MMPretrain's, not a copy."""
    from mmdet.registry import MODELS
    from mmpretrain.models.utils.norm import LayerNorm2d

    import cmae_mm  # noqa: F401
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


def _all_registries():
    """Every registry of the four frameworks, once each, as ``(package, NAME)``
    (``NAME`` as the package's ``registry`` module spells it; MMPretrain's and
    MMDet's ``MMENGINE_*`` aliases of MMEngine's root registries are skipped)."""
    from mmengine.registry import Registry
    seen, out = set(), {}
    for package in FRAMEWORKS.values():
        module = _registry_module(package)
        for attr in sorted(dir(module)):
            reg = getattr(module, attr)
            if (isinstance(reg, Registry) and not attr.startswith('MMENGINE_')
                    and id(reg) not in seen):
                seen.add(id(reg))
                out[(package, attr)] = reg
    return out


def _registry_module(package: str):
    import importlib
    return importlib.import_module(f'{package}.registry')


def _readme_table(repo_root):
    """``{(package, REGISTRY, name): module}`` from README's registry table."""
    import os.path as osp
    import re
    text = open(osp.join(repo_root, 'README.md')).read()
    head = '| name | registry | module | what |'
    assert head in text, f'README.md has no registry table headed {head!r}'
    rows = {}
    for line in text[text.index(head):].splitlines()[2:]:
        if not line.startswith('|'):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        name, registry, module = (c.strip('`') for c in cells[:3])
        framework, reg = registry.split()
        assert framework in FRAMEWORKS, (line, f'framework one of {list(FRAMEWORKS)}')
        assert re.fullmatch(r'[\w.]+', module), line
        key = (FRAMEWORKS[framework], reg, name)
        assert key not in rows, f'README.md registry table: {key} twice'
        rows[key] = module
    return rows


def test_readme_registry_table_lists_every_registration(repo_root):
    """Every module registered by cmae_mm (its class defined under ``cmae_mm.``) in
    any registry of MMEngine, MMPretrain, MMSeg or MMDet has its row in README.md's
    table, and every row names a module registered there, defined in (or under) the
    module the row says."""
    import cmae_mm  # noqa: F401
    registries = _all_registries()
    found = {
        (package, attr, name): obj.__module__
        for (package, attr), reg in registries.items()
        for name, obj in reg.module_dict.items()
        if getattr(obj, '__module__', '').startswith('cmae_mm.')
    }
    assert len(found) >= len({(p, r, n)
                              for (p, r), names in EXPECTED.items()
                              for n in names})
    table = _readme_table(repo_root)
    labels = {v: k for k, v in FRAMEWORKS.items()}
    missing = [
        f'| `{n}` | {labels[p]} {r} | `{m}` | ... |'
        for (p, r, n), m in sorted(found.items()) if (p, r, n) not in table
    ]
    assert not missing, ('registered by cmae_mm but not in README.md\'s registry '
                         'table; add the rows:\n' + '\n'.join(missing))
    for (package, attr, name), module in table.items():
        reg = registries.get((package, attr))
        assert reg is not None, f'README row {name}: no registry {package}.{attr}'
        obj = reg.module_dict.get(name)
        assert obj is not None, (f'README row {name}: not registered in '
                                 f'{package}.registry.{attr}; delete the row')
        where = obj.__module__
        assert where == module or where.startswith(module + '.'), (
            f'README row {name}: defined in {where}, the row says {module}')


@pytest.mark.e2e
def test_custom_imports_in_a_config_registers_everything(tmp_path, run_tool):
    """What a user's config does: custom_imports, then build by name."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        "custom_imports = dict(imports=['cmae_mm'], allow_failed_imports=False)\n"
        "transform = dict(type='PixelShift', view_size=32, max_shift=3)\n")
    code = ('import sys\n'
            'from mmengine.config import Config\n'
            'cfg = Config.fromfile(sys.argv[1])\n'
            'from mmpretrain.registry import TRANSFORMS\n'
            't = TRANSFORMS.build(cfg.transform)\n'
            'print(type(t).__module__)\n')
    out, _ = run_tool(['-c', code, cfg], timeout=300)
    assert out.stdout.strip().endswith('cmae_mm.datasets.transforms.pixel_shift')


@pytest.mark.e2e
def test_version_in_one_place(repo_root, run_tool):
    import cmae_mm
    from cmae_mm.version import __version__
    assert cmae_mm.__version__ == __version__
    out, _ = run_tool(['setup.py', '--version'], timeout=120)
    assert out.stdout.strip().splitlines()[-1] == __version__


# Blocks mmseg and mmdet in a fresh interpreter: a None entry in sys.modules makes
# `import mmseg` raise ImportError, as on a machine where they are not installed.
WITHOUT_SEG_DET = "import sys\nsys.modules['mmseg'] = sys.modules['mmdet'] = None\n"


@pytest.mark.e2e
def test_import_and_train_without_mmseg_and_mmdet(run_tool, photo_folder, tmp_path):
    """`import cmae_mm` needs only MMPretrain: with mmseg and mmdet unimportable it
    imports, registers the pretraining modules and a CMAE training step runs; a
    detection module named in a config fails naming the extra to install."""
    code = WITHOUT_SEG_DET + '''
import torch
import cmae_mm
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
print('unavailable:', sorted(cmae_mm.transfer.UNAVAILABLE))
init_default_scope('mmpretrain')
cfg = Config.fromfile('configs/pretrain/cmae_vit-tiny-p16_1xb8-800iter_demo.py')
model = MODELS.build(cfg.model)
model.init_weights()
optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
views = [torch.randn(4, 3, 224, 224), torch.randn(4, 3, 224, 224)]
before = model.backbone.patch_embed.projection.weight.detach().clone()
losses = model.loss(views, [])
sum(losses.values()).backward()
optim.step()
changed = not torch.equal(before, model.backbone.patch_embed.projection.weight)
print('step ok', {k: round(float(v), 4) for k, v in losses.items()}, changed)
try:
    MODELS.build(dict(type='ViTDet'))
except ImportError as e:
    print('ViTDet error:', e)
'''
    proc, _ = run_tool(['-c', code])
    out = proc.stdout
    assert "unavailable: ['det', 'seg']" in out
    assert 'step ok' in out and out.rstrip().splitlines()[-2].endswith('True')
    assert "ViTDet needs mmdet" in out and "pip install 'cmae_mm[det]'" in out


@pytest.mark.e2e
def test_seg_config_without_mmseg_names_the_extra(run_tool, tmp_path):
    """tools/train.py on a segmentation config without MMSegmentation stops at once,
    naming the extra, instead of MMEngine's "not in the registry" error."""
    script = tmp_path / 'train_without_seg.py'
    script.write_text(WITHOUT_SEG_DET + 'import runpy\nsys.argv = sys.argv[1:]\n'
                      "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    proc, _ = run_tool([
        script, 'tools/train.py',
        'configs/seg/cmae_vit-base-p16_upernet_8xb2-160k_ade20k-512x512.py',
        '--work-dir', tmp_path / 'work'
    ],
                       check=False)
    assert proc.returncode != 0
    assert "pip install 'cmae_mm[seg]'" in proc.stderr
    assert "default_scope='mmseg'" in proc.stderr
