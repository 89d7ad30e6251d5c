"""Runs the real tritonserver on this machine: start, supervise, drain and stop, with its keys."""
