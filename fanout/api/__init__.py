"""HTTP shared by the read and ingest APIs: bearer tokens, rate limits, errors, common routes."""
