"""The one base of every error caused by what a user gave (a config value, an architecture, a file,
a flag) rather than by a bug: the command-line tools print its message on one line and exit 2."""

INPUT_ERROR_EXIT_CODE = 2


class InputError(Exception):
    """Bad input; the message names the field, file or package at fault."""
