from telepay.cli import main

main()
