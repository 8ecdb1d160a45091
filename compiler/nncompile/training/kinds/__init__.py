"""One module per task kind."""
