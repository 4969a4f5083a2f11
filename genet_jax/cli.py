"""What every command-line tool shares, so they all behave alike.

Each tool is a module with a usage docstring and `main(argv=None) -> int`. Tools that take plain
options parse them with argparse (`parser(...)`); tools driven by an ml_collections config file
(train.py, search.py, `genet_jax.evaluate`) use absl flags, which `config_flags` needs for
`--config FILE --config.field=value` (`run_absl`). Either way an `InputError` (a bad config value,
architecture, file or flag) is one line on stderr and exit code 2 (`exit_code_of`), and so are a bad
flag, a config file that cannot be loaded (`load_config_file`) and an OSError about a path the user
gave (unwritable, on a full disk, a file where a folder belongs), rather than a traceback.
"""
from __future__ import annotations

import argparse
import errno
import logging
import re
import sys
import traceback
from typing import Callable, Optional, Sequence, TypeVar

from genet_jax.errors import INPUT_ERROR_EXIT_CODE, InputError
from genet_jax.versions import require_supported

NOISY_LOGGERS = ("absl", "orbax", "jax._src", "grain")
RAW_WEIGHTS_HELP = "the trained weights even where the checkpoint holds their EMA (used by default)"  # --raw-weights of export, predict, evaluate
# OSErrors whose cause is the path itself or the place it lies on, which the user changes (a bug
# raises others, e.g. EBADF, or these without a file name; those keep their traceback)
PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                         errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP})
T = TypeVar("T")


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


def report(error: BaseException | str) -> int:
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


def path_error(error: OSError) -> Optional[str]:
    """'PATH: cause' for an OSError about a path (PATH_ERRNOS, with its file name), else None."""
    if error.errno not in PATH_ERRNOS or not isinstance(error.filename, str):
        return None
    where = f"{error.filename} -> {error.filename2}" if isinstance(error.filename2, str) else error.filename
    return f"{where}: {error.strerror}"


def exit_code_of(command: Callable[[], int]) -> int:
    """Run `command` (after checking the installed JAX releases); an InputError, or an OSError about a
    path (`path_error`), becomes its one-line message and exit code 2."""
    try:
        require_supported()
        return command()
    except InputError as e:
        return report(e)
    except OSError as e:
        message = path_error(e)
        if message is None:
            raise
        return report(message)


class ConfigFileError(InputError):
    """A config file that cannot be loaded; the message names the file (and the line where known)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _where(path: str, error: BaseException) -> str:
    """'config file PATH, line N' with the last line of the file that `error` passed through."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == path]
    return f"config file {path!r}" + (f", line {lines[-1]}" if lines else "")


def _compiled(path: str):
    """The code of the Python file `path`; a ConfigFileError when it cannot be read or compiled."""
    try:
        with open(path, "rb") as file:
            source = file.read()
    except OSError as e:
        raise ConfigFileError(f"config file {path!r}: {e.strerror}") from None
    try:
        return compile(source, path, "exec", dont_inherit=True)  # not cli.py's __future__ imports
    except SyntaxError as e:
        raise ConfigFileError(f"config file {path!r}, line {e.lineno}: {e.msg}") from None
    except ValueError as e:  # a null byte
        raise ConfigFileError(f"config file {path!r}: {e}") from None


def load_config_file(argument: str, module_name: str) -> "ml_collections.ConfigDict":  # noqa: F821
    """The ConfigDict that `get_config()` of the Python file `argument` returns, loaded as ml_collections
    loads it (`FILE:ARG` calls get_config(ARG)); every way the file can fail is a ConfigFileError."""
    import ml_collections
    path, *config_argument = argument.split(":", 1)
    code = _compiled(path)
    module = type(sys)(module_name)
    module.__file__ = path
    sys.modules[module_name] = module  # as ml_collections does: dataclasses look their module up there
    try:
        exec(code, module.__dict__)
    except Exception as e:  # the file's own code: a failed import, ...
        raise ConfigFileError(f"{_where(path, e)}: {_first_line(e)}") from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigFileError(f"config file {path!r} defines no get_config() (the function that returns the config)")
    try:
        config = module.get_config(*config_argument)
    except Exception as e:
        raise ConfigFileError(f"{_where(path, e)}: get_config() raised {_first_line(e)}") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigFileError(f"config file {path!r}: get_config() returned "
                              f"{'None' if config is None else type(config).__name__}, not an "
                              "ml_collections.ConfigDict")
    return config


def config_file_parser(name: str, lock_config: bool):
    """An absl parser of `--NAME FILE` in place of ml_collections' own, which turns an unreadable file
    into a config that fails when first used and lets the file's other failures out as tracebacks."""
    from absl import flags

    class ConfigFileParser(flags.ArgumentParser):
        def parse(self, argument: str):
            config = load_config_file(argument, f"{name}_config")
            if lock_config:
                config.lock()
            return config

        def flag_type(self) -> str:
            return "config object"

    return ConfigFileParser()


def _unknown_config_field(error: Exception) -> str:
    field = str(error).strip("\"'")
    return f"the config has no field {field!r} (see the config file for the field names)"


def _with_config_file(error: Exception) -> str:
    """`error`, naming the config file where it is about an override of one of the file's fields
    (absl's message: 'flag --NAME.field=value: cause')."""
    from absl import flags
    from ml_collections import config_flags
    override = re.match(r"flag --(\w+)\.", str(error))
    if override is None or override.group(1) not in flags.FLAGS:
        return str(error)
    try:
        path = config_flags.get_config_filename(flags.FLAGS[override.group(1)])
    except (TypeError, flags.Error):  # not a config flag, or not parsed
        return str(error)
    return f"{error} (a field of config file {path!r})"


def _parsed_or_exit(parse: Callable[[], T]) -> T:
    """`parse()` (absl flags); a bad flag, config file or override of a config field: one line, exit 2."""
    from absl import flags
    try:
        return parse()
    except (InputError, flags.Error) as e:
        sys.exit(report(_with_config_file(e)))
    except (AttributeError, KeyError) as e:  # ml_collections looking up an override's field
        sys.exit(report(_unknown_config_field(e)))
    except (IndexError, TypeError, ValueError) as e:  # ... through a value that has no fields
        sys.exit(report(f"an override of a config field: {_first_line(e)}"))


def define_config_file(name: str, default: str, help_text: str, lock_config: bool = True) -> None:
    """`config_flags.DEFINE_config_file` with `config_file_parser`. ml_collections applies the command
    line's `--NAME.field=` overrides to the default file when it is set (unless --NAME is given), so
    an unknown field of the default is reported here."""
    from absl import flags
    from ml_collections import config_flags  # the train extra, like every config-file tool
    config_flags.DEFINE_config_file(name, None, help_text, lock_config=lock_config)
    flags.FLAGS[name].parser = config_file_parser(name, lock_config)
    _parsed_or_exit(lambda: flags.FLAGS.set_default(name, default))


def _parse_absl_flags(argv: Sequence[str]) -> list[str]:
    from absl import flags
    return _parsed_or_exit(lambda: flags.FLAGS(list(argv)))


def run_absl(main: Callable[[list[str]], int], argv: Optional[Sequence[str]] = None) -> None:
    """absl's app.run for the config-file tools, with flag errors reported like every InputError."""
    from absl import app
    def checked_main(args: list[str]) -> None:
        if len(args) > 1:
            sys.exit(report(f"unexpected arguments: {args[1:]}"))
        sys.exit(exit_code_of(lambda: main(args)))

    app.run(checked_main, argv=list(argv) if argv is not None else None, flags_parser=_parse_absl_flags)
