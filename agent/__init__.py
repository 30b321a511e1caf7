"""The agent: tickets, localization, masking, the fix loop, git and pull requests, batch, the CLI.

It drives `model` (drafting) and `runner` (validation), which in turn uses `sandboxes`; nothing
below it imports it.
"""
