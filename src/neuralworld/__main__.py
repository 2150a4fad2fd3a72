import sys

from neuralworld.cli import main

sys.exit(main())
