"""The worker: everything that knows arq's internals lives in this package.

arq 0.28 is in maintenance mode and pinned below 0.29; its key layout, its `Worker` class and
its cron machinery are used here and nowhere else, so that moving to another queue touches one
folder. The stages (`pipeline.schedule`, `pipeline.download`, ...) are plain asyncio code.
"""
