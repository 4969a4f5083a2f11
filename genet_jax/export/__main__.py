import sys

from genet_jax.export import main

sys.exit(main())
