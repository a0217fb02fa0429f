//! The AiFace (AI06) protocol: decoding every documented message shape, the exact bytes of
//! what the agent sends, the paged-read rule, and the `device-sim aiface` emulator driven by a
//! tiny agent built from the sans-IO types.

mod paging;
mod parsing;
mod serialisation;

#[cfg(feature = "sim")]
mod agent;
#[cfg(feature = "sim")]
mod emulator;
