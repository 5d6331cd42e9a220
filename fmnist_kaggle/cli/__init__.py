from fmnist_kaggle.cli.main import main

__all__ = ["main"]
