"""The package version: a leaf every stage may import (the package root imports the API)."""

__version__ = "0.1.0"
