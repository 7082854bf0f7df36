"""Exports: a crawl's stored pages as JSON Lines, CSV or Parquet, to a file, a stream or S3.

`export_crawl` (`pipeline.export.exporter`) is what `Pipeline.export` and `pipeline export` run.
"""
