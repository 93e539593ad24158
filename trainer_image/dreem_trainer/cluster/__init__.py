"""The trainer's side of a DreemTrainingJob: reporting progress into the job's status."""

from dreem_trainer.cluster.job_status import JobStatus, job_from_environment, progress_interval

__all__ = ["JobStatus", "job_from_environment", "progress_interval"]
