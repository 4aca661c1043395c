"""The one exception type a user's mistake turns into, with the file/row/option it concerns."""


class LandmaskError(Exception):
    """A problem the user can fix: a bad file, a bad row, a wrong option.  The message names it."""


def for_option(error: LandmaskError, option: str, given) -> LandmaskError:
    """A model loader's ``error`` restated for the option (or command) that gave ``given``: its
    messages begin with --model, or with the file."""
    msg = str(error)
    return LandmaskError(option + msg[len("--model"):] if msg.startswith("--model") else f"{option} {given}: {msg}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a service manager, a container stopping): unwinds like Ctrl-C, so partial
    outputs are removed and worker processes are stopped, and the exit status is 143 (``camera``
    finishes its recording, as on Ctrl-C, and exits 143).  The CLI raises it (cli.main)."""
    signal_name = "SIGTERM"
