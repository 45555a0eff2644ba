"""``python -m sj_sew``: the ``sj-sew`` command."""
import sys

from .cli import main

sys.exit(main())
