"""The chaos checker's modules: reading a run directory, the list-append, domain and health
checks, the statistics, and the HTML report (chaos/check.py ties them together)."""
