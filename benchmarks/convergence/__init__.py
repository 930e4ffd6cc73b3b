"""Convergence under faults: a seeded tenant provisioned end to end through the emulators, the Service
Bus stand-in and the real function handlers while everything that production brings goes wrong, then
a check that Salesforce ended up exactly where the mapping says it should.

    python -m benchmarks.convergence --users 10000 [--seed N] [--json]

tests/e2e/test_convergence.py runs the same scenario at 1,000 users."""
