"""Patient summaries built from the store of record by the pure engines and kept as cached patient views.

Below both the gateway (which reads them on the request path) and the workers (whose job computes them after
every write): neither imports the other for a summary."""
