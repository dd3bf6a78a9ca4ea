from reconciler.commands.app import main

main()
