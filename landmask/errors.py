"""The one exception type a user's mistake turns into, with the file/row/option it concerns."""


class LandmaskError(Exception):
    """A problem the user can fix: a bad file, a bad row, a wrong option.  The message names it."""


def for_option(error: LandmaskError, option: str, given) -> LandmaskError:
    """A model loader's ``error`` restated for the option (or command) that gave ``given``: its
    messages begin with --model, or with the file."""
    msg = str(error)
    return LandmaskError(option + msg[len("--model"):] if msg.startswith("--model") else f"{option} {given}: {msg}")
