"""Helpers that build small synthetic GGUF files for the tests."""
