"""The embedded default: with no Redis or MongoDB configured, local ones under the data folder."""
