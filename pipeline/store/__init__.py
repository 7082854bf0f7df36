"""The store stage: documents to MongoDB in group commits, bodies to S3 by their sha256."""
