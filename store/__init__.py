"""The gateway's working store in Redis: versioned resources, per-patient compartments, identifier index."""
