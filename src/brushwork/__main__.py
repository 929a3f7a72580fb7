"""`python -m brushwork` = the `brushwork` command."""

from brushwork.cli.main import main

main()
