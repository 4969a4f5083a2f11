"""What every command-line tool shares, so they all behave alike.

Each tool is a module with a usage docstring and `main(argv=None) -> int`. Tools that take plain
options parse them with argparse (`parser(...)`); tools driven by an ml_collections config file
(train.py, search.py, `genet_jax.evaluate`) use absl flags, which `config_flags` needs for
`--config FILE --config.field=value` (`run_absl`). Either way an `InputError` (a bad config value,
architecture, file or flag) is one line on stderr and exit code 2 (`exit_code_of`), and a bad
flag is reported the same way rather than by a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence

from genet_jax.errors import INPUT_ERROR_EXIT_CODE, InputError
from genet_jax.versions import require_supported

NOISY_LOGGERS = ("absl", "orbax", "jax._src", "grain")
RAW_WEIGHTS_HELP = "the trained weights even where the checkpoint holds their EMA (used by default)"  # --raw-weights of export, predict, evaluate


def setup_logging(quiet: tuple[str, ...] = ()) -> None:
    """INFO logging with timestamps; library chatter at WARNING, `quiet` loggers too."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in NOISY_LOGGERS + tuple(quiet):
        logging.getLogger(name).setLevel(logging.WARNING)


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """An argparse parser for `python -m prog`, described by the module docstring's second paragraph
    (the first is the usage line)."""
    paragraphs = [p for p in doc.strip().split("\n\n") if p.strip()]
    description = paragraphs[1] if len(paragraphs) > 1 else paragraphs[0]
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def report(error: BaseException) -> int:
    """Print `error` as the tools do (one line on stderr); the exit code for it."""
    print(f"error: {error}", file=sys.stderr)
    return INPUT_ERROR_EXIT_CODE


def require_extra_or_exit(extra: str, command: str) -> None:
    """For a tool's first lines, before it imports what `extra` installs: one line and exit code 2 when
    that extra is missing (genet_jax.optional.EXTRA_MODULES)."""
    from genet_jax.optional import MissingDependency, require_extra
    try:
        require_extra(extra, command)
    except MissingDependency as e:
        sys.exit(report(e))


def exit_code_of(command: Callable[[], int]) -> int:
    """Run `command` (after checking the installed JAX releases); an InputError becomes its one-line
    message and exit code 2."""
    try:
        require_supported()
        return command()
    except InputError as e:
        return report(e)


def _unknown_config_field(error: Exception) -> str:
    field = str(error).strip("\"'")
    return f"the config has no field {field!r} (see the config file for the field names)"


def define_config_file(name: str, default: str, help_text: str, **kwargs) -> None:
    """`config_flags.DEFINE_config_file`; ml_collections applies the command line's `--NAME.field=`
    overrides to the default file right here, so an unknown field is reported here."""
    from ml_collections import config_flags  # the train extra, like every config-file tool
    try:
        config_flags.DEFINE_config_file(name, default, help_text, **kwargs)
    except (AttributeError, KeyError) as e:
        sys.exit(report(_unknown_config_field(e)))


def _parse_absl_flags(argv: Sequence[str]) -> list[str]:
    from absl import flags
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as e:
        sys.exit(report(e))
    except (AttributeError, KeyError) as e:  # an override of a config file given by --config
        sys.exit(report(_unknown_config_field(e)))


def run_absl(main: Callable[[list[str]], int], argv: Optional[Sequence[str]] = None) -> None:
    """absl's app.run for the config-file tools, with flag errors reported like every InputError."""
    from absl import app
    def checked_main(args: list[str]) -> None:
        if len(args) > 1:
            sys.exit(report(f"unexpected arguments: {args[1:]}"))
        sys.exit(exit_code_of(lambda: main(args)))

    app.run(checked_main, argv=list(argv) if argv is not None else None, flags_parser=_parse_absl_flags)
