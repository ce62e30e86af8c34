"""Learnosity Data API: request signing, transport, outcome classification, paging."""
