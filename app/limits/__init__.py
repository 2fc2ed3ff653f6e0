"""Limits, budgets and usage per gateway key: the rules, the ledger that counts them (this process's or
Redis's), and the quotas that enforce them around each model call."""
