import sys

from ort_core.cli import main

sys.exit(main())
