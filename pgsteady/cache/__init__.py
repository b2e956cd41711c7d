"""Cache rules for the proxy or CDN in front of a site, and CDN purges as jobs.

``rules`` reads the rules file, ``evaluate`` says what it decides for a
request, ``targets`` turns it into a proxy configuration (one module per
target), ``proxytest`` proves the examples on a real nginx, ``probe`` looks at
live responses, and ``purge`` registers the ``pgsteady.cdn_purge`` task.
"""
