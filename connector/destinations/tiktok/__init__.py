"""TikTok Events API 2.0: the first destination."""

from connector.destinations.tiktok.client import TikTokEventsApi

DESTINATION = TikTokEventsApi()
