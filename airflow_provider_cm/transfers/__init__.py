"""Transfers: Communications Mining datasets and streams straight into other systems' tables."""
