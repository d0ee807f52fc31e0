"""The teams' scheduled work."""

from __future__ import annotations

from server.scheduler import Job

JOBS: tuple[Job, ...] = ()
