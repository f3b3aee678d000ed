"""``python -m flatscope`` (and so ``torchrun -m flatscope``) runs the command line."""

import sys

from flatscope.cli import main

sys.exit(main())
