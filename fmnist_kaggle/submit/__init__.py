"""Kaggle: the official client with timeouts and retries (`kaggle_client`), competition
downloads (`download`), and uploads with their records (`uploads`)."""
