"""Tasks: how a family of methods is trained, evaluated, benchmarked and run on a user's files."""
