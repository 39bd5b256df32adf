"""Telling people about alerts: one printed line each, and a user's command run for each.

:class:`AlertCommand` runs the command of ``--on-alert`` once per alert, with the file, the
amplifier and the reason as its last three arguments and as the environment variables
``SKIPPERDASK_FILE``, ``SKIPPERDASK_AMP`` and ``SKIPPERDASK_REASON``, so that an experiment can
post to its chat or alarm system. The command line is split as a shell would split it
(:func:`shlex.split`) but no shell runs it: the values are arguments, never parsed, so a file
name or a reason cannot inject anything. The commands run one after the other in a thread of
their own, each for at most :data:`COMMAND_SECONDS`: a slow chat server never holds the
campaign back.
"""

import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading

from ..errors import BadOptionError

#: seconds an alert command may run before it is killed
COMMAND_SECONDS = 60.0


def print_alert(alert, stream=None):
    """Print one alert as one line: ``alert: FILE AMP: REASON`` (``-`` for a whole file).

    Parameters
    ----------
    alert : skipperdask.campaign.alerts.Alert
    stream : file, optional
        Default standard output, as it is now.
    """
    print(f"alert: {alert}", file=sys.stdout if stream is None else stream, flush=True)


class AlertCommand:
    """Runs a user's command for each alert, in the background (see the module).

    Parameters
    ----------
    command : str
        The command line, e.g. ``"post-to-chat --channel ccd"``; the file, amplifier and
        reason are appended as three arguments.

    Raises
    ------
    BadOptionError
        The command line is empty, unbalanced, or its program is not found.
    """

    _END = object()

    def __init__(self, command):
        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise BadOptionError(f"--on-alert {command!r}: {error}") from error
        if not self.argv:
            raise BadOptionError("--on-alert: the command is empty")
        if shutil.which(self.argv[0]) is None:
            raise BadOptionError(f"--on-alert: {self.argv[0]}: no such program (give its path, "
                                 "or make it executable)")
        self._alerts = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alert-command", daemon=True)
        self._thread.start()

    def __call__(self, alert):
        """Queue the command for one alert; returns at once."""
        self._alerts.put(alert)

    def close(self, wait=True):
        """No more alerts: with ``wait``, let the queued commands run to their end."""
        self._alerts.put(self._END)
        if wait:
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        # after a Ctrl-C nobody waits for a chat server
        self.close(wait=kind is None)

    def _run(self):
        while (alert := self._alerts.get()) is not self._END:
            environment = {**os.environ, "SKIPPERDASK_FILE": alert.path,
                           "SKIPPERDASK_AMP": alert.amp, "SKIPPERDASK_REASON": alert.reason}
            argv = [*self.argv, alert.path, alert.amp, alert.reason]
            try:
                done = subprocess.run(argv, env=environment, stdin=subprocess.DEVNULL,
                                      timeout=COMMAND_SECONDS, check=False)
            except subprocess.TimeoutExpired:
                problem = f"still running after {COMMAND_SECONDS:g} s, killed"
            except OSError as error:
                problem = error.strerror or str(error)
            else:
                problem = f"exit status {done.returncode}" if done.returncode else ""
            if problem:
                print(f"warning: --on-alert {self.argv[0]} for {alert.path} {alert.amp or '-'}: "
                      f"{problem}", file=sys.stderr, flush=True)
