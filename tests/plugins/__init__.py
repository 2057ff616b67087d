"""Test plugins: what tests install into the code under test through runtime.hooks (docs/testing.md).

Production modules read no test switch; these install kill points, job faults and a storage probe
that looks elsewhere, in the process under test (a fixture, a Ray worker setup hook, or a child
process started through :mod:`plugins.kill_at`).
"""
