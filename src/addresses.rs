//! Addresses and CIDR blocks ([`AddressRange`]) and lists of them ([`AddressList`]).
//!
//! Neutral ground: the configuration checks them, the network edge uses them for exemptions and
//! trusted proxies, and the hub for address bans.

use std::net::IpAddr;
use std::str::FromStr;

/// An address, or a CIDR block such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("bad address `{addr}`"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("bad prefix length `{p}`"))?,
            None => max,
        };
        Ok(AddressRange { network, prefix })
    }
}

impl AddressRange {
    /// True if `addr` lies in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

/// A list of addresses and CIDR blocks (the exemptions, the trusted proxies).
#[derive(Debug, Clone, Default)]
pub struct AddressList(Vec<AddressRange>);

impl AddressList {
    /// Parses entries already validated by the config (bad ones are skipped).
    pub fn new(entries: &[String]) -> Self {
        AddressList(entries.iter().filter_map(|e| e.parse().ok()).collect())
    }

    /// True if `addr` is in the list.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let range: AddressRange = "10.1.0.0/16".parse().unwrap();
        assert!(range.contains("10.1.200.3".parse().unwrap()));
        assert!(!range.contains("10.2.0.1".parse().unwrap()));
        let one: AddressRange = "127.0.0.1".parse().unwrap();
        assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<AddressRange>().is_err());
        assert!("nonsense".parse::<AddressRange>().is_err());
        let odd: AddressRange = "192.168.0.0/23".parse().unwrap();
        assert!(odd.contains("192.168.1.9".parse().unwrap()));
        assert!(!odd.contains("192.168.2.9".parse().unwrap()));
    }
}
