"""Benchmarks behind `appliancectl bench ...`: they print figures and write JSON; tests never
assert on speed."""
