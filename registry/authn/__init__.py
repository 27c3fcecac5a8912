"""Who sent a request: htpasswd or LDAP Basic credentials, a client certificate (mTLS), an
identity a cluster peer vouches for, or nobody (anonymous), in zot's order (authenticator.py)."""
