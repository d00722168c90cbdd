from specfair.cli import main

main()
