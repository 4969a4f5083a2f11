import sys

from genet_jax import cli

# every subcommand reads or writes this project's checkpoints (orbax) or calibrates through the input
# pipeline (grain): a missing train extra is one line, exit code 2, before those imports
cli.require_extra_or_exit("train", "python -m genet_jax.export")

from genet_jax.export import main  # noqa: E402

sys.exit(main())
