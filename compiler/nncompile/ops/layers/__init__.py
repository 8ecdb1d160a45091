"""Op kinds of layers: torch.nn classes, functional ops, merges, user layers by import path."""
