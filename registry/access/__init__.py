"""zot's http.accessControl, enforced: the decision (policy.py, pure), the action each route needs
(actions.py), repository patterns as doublestar matches them (registry/globs.py), and what the app does
with a request (guard.py). The settings themselves are config/access.py; docs/security.md says
how it all fits, and where it differs from zot."""
