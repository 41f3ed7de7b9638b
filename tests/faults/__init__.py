"""Fault-injection tests: checkers over recorded histories, workloads, the fast tier and the soak."""
