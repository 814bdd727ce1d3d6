"""Streaming evaluation: chunk, stream over gRPC, decode, score."""
