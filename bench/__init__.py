"""The benchmark of issue 5: the pipeline against the floor of its own parts, on loopback services.

`python -m bench.run` starts Redis, SecantusDB, moto's S3 and the synthetic site as separate
processes, runs a crawl through pipeline worker processes and the same per-page work as a
plain asyncio loop (`bench.floor`), and prints one JSON line per run. CPU and memory are read
from /proc for each process tree, so the site's and the services' costs are reported apart
from the pipeline's. See `bench/RESULTS.md` for measured figures.
"""
