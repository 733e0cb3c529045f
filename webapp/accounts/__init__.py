"""Who may sign in: the users file (reading it whatever it holds, rewriting it atomically),
sessions, failed-login counts, the one-bcrypt-at-a-time gate and the secret-key policy.

Flask-free; may import ``webapp.core`` only.
"""
