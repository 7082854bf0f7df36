"""The command line: `pipeline crawl`, `worker`, `status`, `schedules`, `demo`.

The console script's entry point lives here and loads the commands only when called, so that
importing a module of this package (the demo site, say) does not load every command.
"""

import sys


def entry_point() -> None:
    from pipeline.cli.main import main

    sys.exit(main())
