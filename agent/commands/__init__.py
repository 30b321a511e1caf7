"""The command line: each file parses one command's arguments and hands off."""
