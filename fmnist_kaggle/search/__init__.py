"""Searching over runs: cross-validated sweeps (`sweep`) and the reports' experiment tables
(`reproduce`); the home of the time-budgeted autopilot."""
