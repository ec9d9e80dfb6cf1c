"""Accounts: sign-up, log-in, password management, and the two roles.

Roles are Django groups (``student``, ``instructor``) created by a data
migration, so the admin can grant them and no extra table is needed. Code asks
``accounts.roles`` rather than looking at groups itself.
"""
