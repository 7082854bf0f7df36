"""The built-in job functions: `async def job(ctx, ...)`, resources in `ctx["pipeline"]`.

Workers register them by import path (`pipeline.worker.registry`), as they register yours; the
machinery never imports this package.
"""
