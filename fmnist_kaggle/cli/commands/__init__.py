"""The command groups of `fkaggle`: one module each, found by `cli.main` in this folder."""
