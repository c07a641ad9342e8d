"""jobtitles: classify job titles into a seniority level and a job area, torch-free."""

__version__ = "0.1.0"
