"""The one exception type a user's mistake turns into, with the file/row/option it concerns."""


class LandmaskError(Exception):
    """A problem the user can fix: a bad file, a bad row, a wrong option.  The message names it."""
