"""Self-Instruct (Wang et al. 2022) as installable software."""
