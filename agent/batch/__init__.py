"""`agent batch`: a backlog of tickets through one loaded model, with a durable journal.

sources (what to fix) -> journal (durable states) -> scheduler (tickets in flight, budgets,
one model) -> publish (one PR per green ticket) -> report (table, JSON, markdown).
"""
