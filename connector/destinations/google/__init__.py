"""Google Ads, through Google's Data Manager API (not the Google Ads API, not GA4)."""

from connector.destinations.google.client import GoogleDataManager

DESTINATION = GoogleDataManager()
