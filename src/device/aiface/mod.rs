//! The AI06 (AiFace) driver: a WebSocket server the terminals dial into, one command in flight
//! per device, complete user reads, durable punches, keypad-enrolment notices.

mod backfill;
mod connection;
mod hub;
mod read;
mod server;
mod session;

pub use connection::{websocket_config, MAX_FRAME_BYTES};
pub use hub::AifaceHub;
pub use server::{AifaceServer, Notice};
pub use session::{AifaceSession, ExchangeError, Timeouts, MAX_ATTEMPTS};

use super::{
    Credential, DeviceSession, FetchMode, ListDigest, PolledUsers, ReadError, ReadSink, UserRead,
};
use std::future::Future;

impl DeviceSession for AifaceSession {
    fn device_id(&self) -> &str {
        AifaceSession::device_id(self)
    }

    fn read_users<'a>(
        &'a self,
        mode: FetchMode,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> impl Future<Output = Result<UserRead, ReadError>> + Send + 'a {
        read::read_users(self, mode, sink)
    }

    fn poll_users<'a>(
        &'a self,
        last_list: Option<ListDigest>,
        sink: &'a mut (dyn ReadSink + Send),
    ) -> impl Future<Output = Result<PolledUsers, ReadError>> + Send + 'a {
        read::poll_users(self, last_list, sink)
    }

    fn write_credential<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        read::write_credential(self, credential)
    }

    fn set_user_name<'a>(
        &'a self,
        user_id: &'a str,
        name: &'a str,
    ) -> impl Future<Output = Result<(), ReadError>> + Send + 'a {
        read::set_user_name(self, user_id, name)
    }
}
