//! The ZK binary protocol: framing, checksum, commands, record layouts and bulk reads.
