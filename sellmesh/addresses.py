"""Whether an IP address is a public one: for URLs a tenant chooses and the mesh then connects to from inside."""

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits, and reach it through a translator:
# NAT64's well-known prefix (RFC 6052), SIIT's IPv4-translated form, and the deprecated IPv4-compatible form.
_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("::/96"),
)
# The local-use NAT64 prefix (RFC 8215) is used at lengths from /48 to /96, where the IPv4 address sits at
# different bits: which one an address reaches cannot be told from the address, so none of it is public.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for or tunnels to, if any: mapped (`::ffff:a.b.c.d`), translated
    (NAT64, SIIT), IPv4-compatible, 6to4 (`2002::/16`) and Teredo's client."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if int(ip) > 1 and any(ip in network for network in _LAST_32_BITS):  # `::` and `::1` are IPv6's own
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def judged(ip: IPAddress) -> IPAddress:
    """The address a connection to `ip` would reach in the end: the IPv4 one it carries, or itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        return embedded_ipv4(ip) or ip
    return ip


def is_public(ip: IPAddress) -> bool:
    """Globally routable and not multicast, judged by the IPv4 address it carries if it carries one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip in _LOCAL_NAT64:
        return False
    target = judged(ip)
    return target.is_global and not target.is_multicast
