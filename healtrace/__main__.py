from healtrace.cli import main

main()
