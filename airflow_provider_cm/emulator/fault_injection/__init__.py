"""The test knobs (:mod:`.knobs`), the fault rules (:mod:`.rules`) and the ASGI layer applying
them (:mod:`.layer`). Never part of the tenant's data."""
