"""Fine-tuning recipes: freezing, parameter groups, unfreezing, layer depth, EMA, optimizers."""
