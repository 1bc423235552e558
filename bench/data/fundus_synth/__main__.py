"""``python -m bench.data.fundus_synth``: see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
