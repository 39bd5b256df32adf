"""A campaign run in a process of its own, killed with SIGKILL midway: what a kill leaves
behind (tests of the catalogue's commits, on disk and on a bucket)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_RUN = """
import sys

from distributed import Client

from skipperdask.campaign import process

address, store, *paths = sys.argv[1:]
with Client(address) as client:
    # one file in flight, a commit after each: the run is slow enough to be killed midway
    process(paths, store, client=client, window=1, commit_seconds=0, progress=False)
"""


def kill_after_commits(address, store, paths, committed, *, env=None, commits=3, timeout=60):
    """Run ``process(paths, store)`` on the cluster at ``address`` in a new process, and
    SIGKILL it once ``committed()`` (images the store holds) reaches ``commits``.

    ``env`` adds to the process's environment (this checkout first on its path).
    """
    run = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_RUN), address, store, *paths],
        cwd=REPOSITORY, env={**os.environ, "PYTHONPATH": REPOSITORY, **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        while committed() < commits and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be killed"
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == -signal.SIGKILL
