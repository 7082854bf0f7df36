"""`pipeline dashboard`: a live web page of crawls, workers and schedules, with controls."""
