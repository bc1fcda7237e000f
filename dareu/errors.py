"""The one exception type users see: the CLI prints its message as a single line and exits 2."""


class DareUError(Exception):
    """Bad input or an unusable artifact. The message says what is wrong and how to fix it."""
