"""Analyses and the HTML report of a run."""
