from greenpatch.agent.commands.cli import main

main()
