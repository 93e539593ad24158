from dreem_trainer.cli import entry_point

entry_point()
