"""The bug benchmark: real libraries, injected single-site bugs, tasks, splits and the runner
behind `agent bench`."""
