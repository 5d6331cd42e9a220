import sys

from fmnist_kaggle.cli.main import main

sys.exit(main())
