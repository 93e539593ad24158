"""Training: association loss, the LightningModule, callbacks and the Trainer assembly."""
