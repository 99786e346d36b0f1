import sys

from iipa.cli import main

sys.exit(main())
