"""S3-compatible storage: one client factory, a download cache, and checkpoint and log sync."""
