"""The tail server ``splitfit-server``: ZeroMQ ROUTER, decode, dynamic batching, torch tail."""
