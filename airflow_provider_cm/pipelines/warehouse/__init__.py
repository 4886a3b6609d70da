"""Exported comments as rows of a warehouse table or a CSV file."""
