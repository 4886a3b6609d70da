"""Draining a stream into files: the output (local file or object storage, parts and commit) and
the ledger of what a try acknowledged, so a retry on another worker knows what came again."""
