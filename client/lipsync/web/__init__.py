"""The web front end: a gateway (gateway.py) that serves a page (static/) and relays between
the browser and the lip-sync server. Installed with the `web` extra (aiohttp)."""
