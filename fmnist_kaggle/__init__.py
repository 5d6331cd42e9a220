"""fmnist_kaggle: win Kaggle-style Fashion-MNIST competitions.

Kept import-light on purpose: nothing here imports torch, so `fkaggle --help`
and the data commands start fast. Heavy modules are imported where needed.
"""

__version__ = "0.1.0"

from fmnist_kaggle.errors import FkaggleError  # noqa: E402

__all__ = ["FkaggleError", "__version__"]
