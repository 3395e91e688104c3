"""Verifying the ID tokens of delegated joins (github, gitlab, kubernetes, oidc): fetching an issuer's keys
(fetch.py, keysets.py), checking a token with them (verify.py), and each method's allow rules (rules.py)."""
