"""``python -m layerwise ...``: the same as the ``layerwise`` console script."""
import sys

from .cli import main

sys.exit(main())
