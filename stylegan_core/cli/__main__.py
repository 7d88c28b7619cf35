import sys

from stylegan_core.cli import main

sys.exit(main())
