"""The notifier: follow the store, deliver each change (webhooks), keep its place in a state file,
expose its metrics, run as a process with signals and logs.

May import ``webapp.accounts`` and ``webapp.core``; no Flask.
"""
