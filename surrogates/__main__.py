import sys

from surrogates.cli import main

sys.exit(main())
