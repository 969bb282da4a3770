"""The chat app's web service: desktop-app/ as static files, and same-origin proxies to the suite's APIs."""
