"""A real OpenID provider (panva's oidc-provider, tests/oidc/provider.mjs) for the OIDC tests, and
a scripted browser that walks the authorization code flow between it and a test portal."""
