"""What tools use to stay in bounds: paths below the allowed roots, the Python sandbox, and the web egress guard."""
