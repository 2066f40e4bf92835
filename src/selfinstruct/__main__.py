"""`python -m selfinstruct`: the same CLI as the `selfinstruct` command."""

from selfinstruct.cli import main

main()
