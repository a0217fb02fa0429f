// What the agent does: packets from `zk::Request`, frames from `aiface::Command`.
use device_protocols::aiface::{Command, OutgoingFrame};
use device_protocols::zk::{ClientSession, Request, RequestBytes};

fn main() {
    let mut session = ClientSession::new();
    let bytes: RequestBytes = session.packet(&Request::GetFreeSizes).encode();
    assert!(!bytes.as_bytes().is_empty());
    let frame = OutgoingFrame::from(&Command::GetUserList { stn: true });
    assert!(frame.as_text().contains("getuserlist"));
}
