"""python -m spark_nb: the spark-nb command."""

import sys

from ._cli import main

sys.exit(main())
