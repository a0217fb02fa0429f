//! The one module that owns sled.
