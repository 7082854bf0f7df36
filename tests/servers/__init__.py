"""Servers the tests and the benchmark run against: synthetic sites, a JSON API, moto's S3."""
