//! `allowed_peers` of an AI06 device: the addresses (`192.0.2.7`) or networks (`10.1.0.0/16`,
//! `2001:db8::/32`) a terminal may connect from. The `sn` a terminal registers with travels in
//! clear over `ws://`, so anyone who learns it could dial in as that terminal; restricting the
//! peer address closes that door on a site network.

use std::net::IpAddr;

/// One allowed address or network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerRule {
    network: IpAddr,
    prefix: u8,
}

impl PeerRule {
    /// Parses `address` or `address/prefix`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<PeerRule, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network (a.b.c.d/n)"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0–{bits}"))?,
        };
        Ok(PeerRule { network, prefix })
    }

    /// Whether `peer` is this address or inside this network (an IPv4 peer seen as an
    /// IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, peer) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `peer` may connect under `rules` (no rules: any peer).
pub fn allowed(rules: &[PeerRule], peer: IpAddr) -> bool {
    rules.is_empty() || rules.iter().any(|rule| rule.contains(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_match_as_written() {
        let net = PeerRule::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = PeerRule::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all = PeerRule::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6 = PeerRule::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::7".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(PeerRule::parse("10.0.0.0/33").is_err());
        assert!(PeerRule::parse("door-7").is_err());
        assert!(allowed(&[], "192.0.2.1".parse().unwrap()));
    }
}
