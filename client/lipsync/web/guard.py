"""What keeps other sites' pages off a loopback web server: every request must name a Host this
server serves (no DNS rebinding), and any Origin it carries must be one of its own (no
cross-site form posts or WebSockets); answers carry a strict Content Security Policy."""

from urllib.parse import urlsplit

from aiohttp import web

CSP = (
    "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; connect-src 'self'; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def origins_for(host: str, port: int, extra: list[str]) -> set[str]:
    """The origins a server bound to host:port answers (their host:port are the Host headers it accepts)."""
    names = {host, "localhost", "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {host}
    return {f"http://{name}:{port}" for name in names} | set(extra)


def same_site_only(origins: set[str], permissions: str):
    """aiohttp middleware: refuses other hosts and origins; `permissions`: the Permissions-Policy."""
    hosts = {urlsplit(origin).netloc for origin in origins}

    @web.middleware
    async def guard(request: web.Request, handler):
        if request.host not in hosts:
            return web.Response(status=421, text=f"unknown host {request.host[:64]!r}")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in origins:
            return web.Response(status=403, text=f"origin {origin[:64]!r} is not allowed")
        response = await handler(request)
        response.headers.update(
            {
                "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Permissions-Policy": permissions,
            }
        )
        return response

    return guard
