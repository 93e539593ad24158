"""The dreem operator: reconciles DreemTrainingJob resources into gang-scheduled training pods.

Never named `operator`: that is a standard-library module.
"""

__version__ = "0.1.0"
