"""The core: pipeline rules (types, buckets, what a change is, text and time rules, errors,
settings, the timeline's segments) and the SQLite store (schema, adapter, reads, writes,
watching, exports, the audit line).

Imports nothing else of ``webapp`` and nothing of Flask, Werkzeug or Jinja: the uploader API, the
command line and the notifier load it without a web stack (``tests/test_layout.py`` checks).
"""
