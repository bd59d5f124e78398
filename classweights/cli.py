"""Run a stage script: user errors become one line on stderr and a non-zero exit."""
import atexit
import os
import signal
import sys

from classweights.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_stage(main):
    """Run main() as a program: exit with stage_exit_code(main)'s code.

    SIGTERM is turned into KeyboardInterrupt so that the same `finally`
    blocks that remove half-written files run for Ctrl-C and for `kill`.
    """
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    code = stage_exit_code(main)
    if "tensorflow" in sys.modules and code != EXIT_INTERRUPTED:  # a training that ended: see below
        exit_without_teardown(code)
    sys.exit(code)


def stage_exit_code(main):
    """Call main(); report UserError and interruption as one line on stderr; return the exit code
    (the tests call it in their own process)."""
    try:
        main()
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; no finished output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_without_teardown(code):
    """Tearing TensorFlow's modules down at exit costs a training process about 2 s of CPU,
    a fifth of a tiny training (docs/speed.md); every output is written and closed by now
    (files.atomic_path renames it into place), so skip the teardown. The atexit handlers
    still run (CPython's own call of them; TensorFlow's autograph deletes its temporary
    files in one): they take no measurable time."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
