"""The host-side compiler for the RTL cores: a quantised layer -> the core runs (tiles) that compute it."""
