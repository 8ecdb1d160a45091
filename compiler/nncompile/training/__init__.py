"""Stage 4, the LightningModule half: task kinds and fine-tuning recipes."""
