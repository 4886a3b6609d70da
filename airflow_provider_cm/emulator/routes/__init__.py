"""One module per API resource, each with its body checks, its logic and its ``router(store)``."""
