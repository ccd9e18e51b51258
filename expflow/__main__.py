"""python -m expflow"""

import sys

from expflow.cli import main

sys.exit(main())
