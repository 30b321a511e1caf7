"""Isolated execution for untrusted candidate code.

Owns the backends (bubblewrap, Docker, plain process) behind one interface, one worktree per worker
and the resource limits. It imports nothing else of ours.
"""
