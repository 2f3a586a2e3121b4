"""Jobs: the job store, the runner, and what running one sync job means. Imports the engine and below."""
