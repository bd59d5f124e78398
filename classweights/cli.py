"""Run a stage script: user errors become one line on stderr and a non-zero exit."""
import signal
import sys

from classweights.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_stage(main):
    """Call main(); report UserError and interruption as one line on stderr.

    SIGTERM is turned into KeyboardInterrupt so that the same `finally`
    blocks that remove half-written files run for Ctrl-C and for `kill`.
    """
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted; no finished output was written", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
