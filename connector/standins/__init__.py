"""Local stand-ins for the services the connector talks to, shipped with the package so
``connector demo`` and the test suite run against the same strict TikTok."""
