from ciwheels.cli import main

main()
