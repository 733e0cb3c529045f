"""The node's dashboard app: its factory, pages (dashboard, history, change and revert), JSON API,
probes and metrics, forms.

The top of the layer order: may import ``webapp.web`` and everything below it.
"""
