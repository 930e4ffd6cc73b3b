"""Command-line entry for local work: demo, check, plan, sync. Not deployed."""
