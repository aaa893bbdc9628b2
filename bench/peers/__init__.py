"""The side-by-side peers benchmark (issue 17): `make bench-peers`, see run.py."""
