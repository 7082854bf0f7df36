"""What a crawl is: its options, its status, how it starts and completes, and periodic crawls."""
