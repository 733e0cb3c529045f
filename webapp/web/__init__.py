"""What every Flask app here shares: security headers, CSP and CSRF, full page or fragment
rendering, the sign-in views, sessions and password checks as the web sees them.

May import ``webapp.cli``, ``webapp.notify``, ``webapp.accounts`` and ``webapp.core``; never an app
package (``webapp.node``, ``webapp.fleet``).
"""
