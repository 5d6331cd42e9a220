"""Storage: atomic writes (`atomic`), guarded reads of user files (`files`), safe unpickling
(`safe_pickle`), TOML (`tomlfile`), CSV records (`csvfile`), the workspace layout (`layout`,
the one owner of every path) and the checked-artifact store (`artifacts`)."""
