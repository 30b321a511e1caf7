"""Where a fix goes: its branch, its push, its pull request (GitHub's REST API)."""
