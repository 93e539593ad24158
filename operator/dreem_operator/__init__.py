"""The dreem operator: reconciles DreemTrainingJob resources into gang-scheduled training pods.

Never named `operator`: that is a standard-library module. Run it with `dreem-operator` (or
`python -m dreem_operator`); `kopf run -m dreem_operator.handlers` works too. Importing this package does
not import kopf: the CRD generator and the pure decisions load without the cluster client.
"""

__version__ = "0.1.0"
