"""The runtime: runs, step runs, their state machine, services, tasks and the sweeper."""
