"""The `pipeline` console script's entry point, kept free of imports.

CPU-pool processes start by re-importing the script that started their parent. For
`pipeline worker` that script imports this module; the commands themselves (and arq, PyMongo,
aiohttp with them) load only when a command runs, so each pool process stays small.
"""

import sys


def entry_point() -> None:
    from pipeline.commands import main

    sys.exit(main())
