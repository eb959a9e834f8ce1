"""The edge every route shares: error envelopes, request guards, response headers."""
