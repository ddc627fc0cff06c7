"""The set-up profiles of tools/setup_env.sh (demo: MMCV without compiled ops; full:
everything) and tools/install_mmcv_noops.sh, the MMCV for pretraining only
(docs/installation.md, "Pretraining only")."""
import email.parser
import json
import os
import os.path as osp
import re
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement


def _setup_env(repo_root: str, venv, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ['bash', osp.join(repo_root, 'tools', 'setup_env.sh'), *args],
        env=dict(os.environ, CMAE_MM_VENV=str(venv)),
        capture_output=True,
        text=True,
        timeout=120)


def test_unknown_profile_names_the_choices_and_installs_nothing(repo_root, tmp_path):
    proc = _setup_env(repo_root, tmp_path / 'venv', '--profile', 'demos')
    assert proc.returncode == 2
    assert "unknown profile 'demos'" in proc.stdout
    assert '--profile full' in proc.stdout and '--profile demo' in proc.stdout
    assert not (tmp_path / 'venv').exists()


def test_full_profile_satisfies_demo_not_the_reverse(repo_root, tmp_path):
    """The stamp records the installed profile: the demo reuses a full environment
    (never a downgrade), the tests upgrade a demo one, a stale stamp satisfies none."""
    venv = tmp_path / 'venv'
    venv.mkdir()
    stamp = venv / '.cmae_mm_stamp'

    def check(profile):
        proc = _setup_env(repo_root, venv, '--check', '--profile', profile)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        wanted = re.search(r'stamp wanted: +(\S+ \S+)', proc.stdout).group(1)
        return proc.returncode == 0, wanted, proc.stdout

    ok, full, _ = check('full')
    assert not ok and re.fullmatch(r'full [0-9a-f]{16}', full)
    ok, demo, out = check('demo')
    assert not ok and re.fullmatch(r'demo [0-9a-f]{16}', demo)
    assert 'stamp installed: none' in out
    assert 'bash tools/setup_env.sh --profile demo' in out

    stamp.write_text(full + '\n')
    ok, _, out = check('demo')
    assert ok and 'installed and up to date (full profile)' in out
    assert check('full')[0]

    stamp.write_text(demo + '\n')
    assert check('demo')[0]
    assert not check('full')[0]

    stamp.write_text(
        'full 0123456789abcdef\n')  # what a changed requirements file gives
    assert not check('demo')[0] and not check('full')[0]


@pytest.mark.e2e
def test_noops_wheel_is_mmcv_2_1_0_and_meets_mmcv_requirements(repo_root, tmp_path):
    """The wheel tools/install_mmcv_noops.sh builds: distribution `mmcv` 2.1.0, pure
    Python, no compiled op; pip resolves our `mmcv` requirements to it, and its
    `mmcv` imports (transforms, image) without `mmcv._ext`."""
    script = osp.join(repo_root, 'tools', 'install_mmcv_noops.sh')
    cache = tmp_path / 'cache'
    env = dict(os.environ, CMAE_MM_CACHE=str(cache))
    proc = subprocess.run(['bash', script, '--wheel-only', sys.executable],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    if proc.returncode == 3:
        pytest.skip('the mmcv source distribution could not be downloaded: ' +
                    proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    wheel = proc.stdout.strip().splitlines()[-1]
    assert osp.dirname(wheel) == str(cache / 'wheels' / 'mmcv-2.1.0_noops_py3')
    assert re.fullmatch(r'mmcv-2\.1\.0-(py2\.)?py3-none-any\.whl', osp.basename(wheel))

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = email.parser.Parser().parsestr(
            zf.read('mmcv-2.1.0.dist-info/METADATA').decode())
        wheel_info = zf.read('mmcv-2.1.0.dist-info/WHEEL').decode()
    assert meta['Name'] == 'mmcv' and meta['Version'] == '2.1.0'
    assert 'Root-Is-Purelib: true' in wheel_info
    assert not [n for n in names if n.startswith('mmcv/_ext') or n.endswith('.so')]
    assert 'mmcv/transforms/base.py' in names
    assert 'mmengine>=0.3.0' in meta.get_all('Requires-Dist')

    # pip picks this wheel for each `mmcv` requirement we declare (install_requires and
    # the [seg] / [det] extras), ignoring the mmcv installed here and pip's own indexes
    pip_env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    for name in ('mminstall.txt', 'seg.txt', 'det.txt'):
        with open(osp.join(repo_root, 'requirements', name)) as f:
            req = next(line.strip() for line in f if line.startswith('mmcv'))
        proc = subprocess.run([
            sys.executable, '-m', 'pip', 'install', '--dry-run', '--quiet',
            '--ignore-installed', '--no-deps', '--no-index', '--find-links',
            osp.dirname(wheel), '--report', '-', req
        ],
                              env=pip_env,
                              capture_output=True,
                              text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        (item, ) = json.loads(proc.stdout)['install']
        assert Requirement(req).name == item['metadata']['name'] == 'mmcv'
        assert item['download_info']['url'].endswith(osp.basename(wheel))

    target = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
        '--disable-pip-version-check', '--target',
        str(target), wheel
    ],
                   check=True,
                   capture_output=True,
                   timeout=120)
    probe = (
        'import sys; sys.path.insert(0, sys.argv[1]); import mmcv, mmcv.transforms, '
        'mmcv.image; print(mmcv.__file__, mmcv.__version__)\n'
        'try:\n    import mmcv._ext\nexcept ImportError:\n    print("no ops")')
    out = subprocess.run(
        [sys.executable, '-c', probe, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True).stdout.split()
    assert out == [str(target / 'mmcv' / '__init__.py'), '2.1.0', 'no', 'ops']

    again = subprocess.run(['bash', script, '--wheel-only', sys.executable],
                           env=env,
                           capture_output=True,
                           text=True,
                           timeout=60)
    assert again.returncode == 0 and 'reusing the cached wheel' in again.stderr
    assert again.stdout.strip() == wheel
