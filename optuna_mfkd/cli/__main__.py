"""``python -m optuna_mfkd.cli``: the ``optuna-mfkd`` command."""

import sys

from optuna_mfkd.cli.app import main

sys.exit(main())
