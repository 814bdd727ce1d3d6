"""Datasets: manifests and audio in the seed's layout."""
