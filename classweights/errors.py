"""The one exception the library raises for problems a user can fix."""


class UserError(Exception):
    """Bad params, bad data, no network: reported as one line with no traceback (see cli.run_stage)."""
