"""Store platforms: one package per platform, each turning its webhooks into neutral events."""
