"""Security in one place: every security-relevant setting (settings.py), the
masking of secret-looking values, and the checklist behind `pgsteady security
check`. Other modules read their defaults from here instead of keeping their
own, so that a reviewer finds every setting in one file and in docs/security.md.
"""
