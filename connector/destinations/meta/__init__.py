"""Meta Conversions API: website purchases and checkouts sent to a Meta pixel (dataset)."""

from connector.destinations.meta.client import MetaConversionsApi

DESTINATION = MetaConversionsApi()
