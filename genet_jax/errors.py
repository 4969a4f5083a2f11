"""The one base of every error the user fixes by changing what they gave (a config value, an
architecture, a file, a flag; a training run whose loss became NaN too, fixed by a lower learning
rate) rather than a bug: the command-line tools print its message on one line and exit 2."""

INPUT_ERROR_EXIT_CODE = 2


class InputError(Exception):
    """Bad input; the message names the field, file or package at fault."""
