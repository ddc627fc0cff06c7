"""The one way the tests (and tools that drive other tools) start a process."""
import os
import signal
import subprocess
import sys
import time
from typing import Dict, Sequence, Tuple


def run_subprocess(
        args: Sequence,
        env: Dict[str, str],
        cwd: str,
        timeout: float = 600,
        check: bool = True,
        new_session: bool = False) -> Tuple[subprocess.CompletedProcess, float]:
    """Run a command line and return ``(CompletedProcess, seconds)``.

    ``args[0]`` ending in ``.py`` or equal to ``-c`` / ``-m`` runs with this
    interpreter; anything else (``bash tools/dist_train.sh ...``) runs as given. With
    ``check`` a non-zero exit code raises ``AssertionError`` showing the end of stdout
    and stderr. With ``new_session`` the command runs in a process group of its own,
    killed as a whole on a timeout or an interrupt (``subprocess.run`` kills only the
    first process, leaving e.g. the workers of ``torchrun`` running); the
    ``subprocess.TimeoutExpired`` raised then holds the output so far.
    """
    args = [str(a) for a in args]
    if args[0].endswith('.py') or args[0] in ('-c', '-m'):
        args = [sys.executable] + args
    start = time.time()
    if new_session:
        with subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True) as popen:
            try:
                stdout, stderr = popen.communicate(timeout=timeout)
            except BaseException as exc:  # the timeout, or e.g. KeyboardInterrupt
                try:
                    os.killpg(popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # the group has ended already
                stdout, stderr = popen.communicate()
                if isinstance(exc, subprocess.TimeoutExpired):
                    raise subprocess.TimeoutExpired(
                        args, timeout, output=stdout, stderr=stderr) from None
                raise
        proc = subprocess.CompletedProcess(args, popen.returncode, stdout, stderr)
    else:
        proc = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited with {proc.returncode}\n'
                             f'--- stdout (end) ---\n{proc.stdout[-3000:]}\n'
                             f'--- stderr (end) ---\n{proc.stderr[-5000:]}')
    return proc, time.time() - start
