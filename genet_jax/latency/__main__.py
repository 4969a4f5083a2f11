"""`python -m genet_jax.latency`: see genet_jax.latency.cli."""
import sys

from genet_jax.latency.cli import main

sys.exit(main())
