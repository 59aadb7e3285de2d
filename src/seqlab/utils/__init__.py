"""Small helpers shared by benchmarks and CLIs."""
