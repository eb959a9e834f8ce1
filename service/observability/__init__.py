"""What an operator watches: diagnostics, metrics, structured logs."""
